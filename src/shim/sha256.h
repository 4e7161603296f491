// SHA-256 (FIPS 180-4), for naming the shim's socket without linking a crypto library.
#pragma once

#include <string>
#include <string_view>

namespace berth::shim {

// Lowercase hex digest of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace berth::shim
