// Files the shim keeps in the bundle (address, options.json, runtime).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::shim {

// Replaces `path` atomically (temp file + rename) without fsync: the bundle lives in the
// daemon's state dir (/run, tmpfs on a normal host) and means nothing after a reboot, so a
// crash may lose the file but never leaves a partial one. (An fsync pair here cost ~6 ms each
// on disk-backed state dirs, four per container start.)
Status WriteRunFile(const std::string& path, std::string_view data);

}  // namespace berth::shim
