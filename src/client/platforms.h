// OCI platforms as containerd's `platforms` package handles them: parse, normalize, and match
// a wanted platform against what an image index offers. Pure functions, no I/O (but
// HostPlatform's uname).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::client {

// An OCI platform, normalized like containerd's platforms.Normalize ("x86_64" → amd64,
// "aarch64" → arm64 with variant v8 dropped, "armhf" → arm/v7, ...).
struct Platform {
  std::string os;
  std::string arch;
  std::string variant;

  bool operator==(const Platform&) const = default;
};

// `os`/`arch`/`variant` as written in an index or image config, normalized.
Platform NormalizePlatform(const std::string& os, const std::string& arch,
                           const std::string& variant);

// "linux/amd64", "linux/arm64/v8", or just "amd64" (os linux). InvalidArgument for an empty
// part or more than three.
Result<Platform> ParsePlatform(std::string_view s);
// The platform of this host (linux/<uname -m>).
Platform HostPlatform();
// "os/arch[/variant]".
std::string PlatformString(const Platform& p);

// How well `have` serves `want` (containerd's platforms.Only): 0 for the same platform, 1, 2,
// ... for platforms `want` also runs, worse the higher (amd64 also runs 386; arm/vN also runs
// arm/vN-1 down to v5); -1 when it cannot run `have` at all. Both normalized.
int PlatformRank(const Platform& want, const Platform& have);

}  // namespace berth::client
