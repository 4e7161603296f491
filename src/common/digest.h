// Digest strings as go-digest parses them, the one check every component shares.
#pragma once

#include <string_view>

#include "common/status.h"

namespace berth {

// "<algorithm>:<hex>" with algorithm sha256, sha384 or sha512 and exactly that many lowercase
// hex digits. Errors: InvalidArgument with go-digest's wording ("invalid checksum digest
// format", "invalid checksum digest length", "unsupported digest algorithm").
Status ValidateDigest(std::string_view digest);

}  // namespace berth
