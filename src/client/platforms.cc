#include "client/platforms.h"

#include <sys/utsname.h>

#include <cctype>
#include <charconv>
#include <optional>
#include <utility>
#include <vector>

#include "common/validate.h"

namespace berth::client {
namespace {

std::string NormalizeOs(std::string os) {
  for (auto& c : os) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return os == "macos" ? "darwin" : os;
}

// containerd's normalizeArch.
std::pair<std::string, std::string> NormalizeArch(std::string arch, std::string variant) {
  for (auto& c : arch) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto& c : variant) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (arch == "i386") return {"386", ""};
  if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    return {"amd64", variant == "v1" ? "" : variant};
  }
  if (arch == "aarch64" || arch == "arm64") {
    return {"arm64", variant == "8" || variant == "v8" ? "" : variant};
  }
  if (arch == "armhf") return {"arm", "v7"};
  if (arch == "armel") return {"arm", "v6"};
  if (arch == "arm") {
    if (variant.empty() || variant == "7") return {"arm", "v7"};
    if (variant == "5" || variant == "6" || variant == "8") return {"arm", "v" + variant};
  }
  return {arch, variant};
}

// "v7" → 7 (Go's Atoi after TrimPrefix "v"); nullopt when not a number.
std::optional<int> VariantNumber(std::string_view v) {
  if (v.starts_with('v')) v.remove_prefix(1);
  int n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return n;
}

// The platforms `want` runs, best first (containerd's platformVector behind platforms.Only):
// amd64/vN also runs amd64/vN-1 .. v1, then 386; arm/vN runs arm/vN-1 down to v5; arm64
// (variant v8 when unset) runs arm/v8 down to arm/v5.
std::vector<Platform> Compatible(const Platform& want) {
  std::vector<Platform> out = {want};
  auto lower = [&](const char* arch, int from, int down_to) {
    for (int n = from - 1; n >= down_to; --n) {
      out.push_back({want.os, arch, "v" + std::to_string(n)});
    }
  };
  if (want.arch == "amd64") {
    if (auto n = VariantNumber(want.variant); n && *n > 1) lower("amd64", *n, 1);
    out.push_back({want.os, "386", ""});
  } else if (want.arch == "arm") {
    if (auto n = VariantNumber(want.variant); n && *n > 5) lower("arm", *n, 5);
  } else if (want.arch == "arm64") {
    std::string variant = want.variant.empty() ? "v8" : want.variant;
    out.push_back({want.os, "arm", variant});
    if (auto n = VariantNumber(variant); n && *n > 5) lower("arm", *n, 5);
  }
  return out;
}

}  // namespace

Platform NormalizePlatform(const std::string& os, const std::string& arch,
                           const std::string& variant) {
  auto [a, v] = NormalizeArch(arch, variant);
  return Platform{NormalizeOs(os), a, v};
}

int PlatformRank(const Platform& want, const Platform& have) {
  auto all = Compatible(want);
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].os == have.os && all[i].arch == have.arch && all[i].variant == have.variant) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

Result<Platform> ParsePlatform(std::string_view s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t slash = s.find('/', start);
    parts.emplace_back(s.substr(start, slash == std::string_view::npos ? s.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  bool empty_part = false;
  for (const auto& p : parts) empty_part |= p.empty();
  if (parts.size() > 3 || empty_part) {
    return Err(Code::kInvalidArgument,
               "invalid platform " + Quote(s) + " (want os/arch[/variant], e.g. linux/amd64)");
  }
  if (parts.size() == 1) return NormalizePlatform("linux", parts[0], "");
  return NormalizePlatform(parts[0], parts[1], parts.size() == 3 ? parts[2] : "");
}

Platform HostPlatform() {
  utsname u{};
  ::uname(&u);
  return NormalizePlatform("linux", u.machine, "");
}

std::string PlatformString(const Platform& p) {
  return p.os + "/" + p.arch + (p.variant.empty() ? "" : "/" + p.variant);
}

}  // namespace berth::client
