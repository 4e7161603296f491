#include "client/mounts.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include "common/mount.h"

namespace berth::client {
namespace {

// Undoes mountinfo's octal escapes ("\040" is a space).
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j) { return s[j] >= '0' && s[j] <= '7'; };
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string MountCommands(const MountList& mounts, const std::string& target) {
  std::string out;
  for (const auto& m : mounts) {
    if (!out.empty()) out += '\n';
    out += "mount -t " + m.type() + " " + m.source() + " " + target;
    std::string opts;
    for (const auto& o : m.options()) opts += (opts.empty() ? "" : ",") + o;
    if (!opts.empty()) out += " -o " + opts;
  }
  return out;
}

Status MountAll(const MountList& mounts, const std::string& target) {
  std::vector<berth::Mount> plain;
  for (const auto& m : mounts) {
    plain.push_back({m.type(), m.source(), {m.options().begin(), m.options().end()}});
  }
  return berth::MountAll(plain, target);
}

Result<std::string> MountTargetPath(const std::string& target) {
  std::error_code ec;
  std::string path = std::filesystem::absolute(target, ec).lexically_normal().string();
  if (ec) return std::unexpected(StatusFromErrno(ec.value(), "mount target " + target));
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::unexpected(StatusFromErrno(errno, "mount target " + path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Err(Code::kInvalidArgument, "mount target " + path + " is not a directory");
  }
  return path;
}

Result<bool> IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return std::unexpected(StatusFromErrno(errno, "open /proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    // "<id> <parent> <major:minor> <root> <mount point> ..."
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    if (!(fields >> id >> parent >> dev >> root >> point)) continue;
    if (Unescape(point) == path) return true;
  }
  return false;
}

}  // namespace berth::client
