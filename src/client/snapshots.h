// Snapshots from the client side: the calls more than one client flow makes.
#pragma once

#include <string>

#include "client/client.h"
#include "common/status.h"

namespace berth::client {

// Removes snapshot `key` of `snapshotter`. NotFound when there is none.
Status RemoveSnapshot(const Client& client, const std::string& snapshotter,
                      const std::string& key);

}  // namespace berth::client
