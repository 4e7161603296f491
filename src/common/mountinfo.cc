#include "common/mountinfo.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace berth {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool UnderMount(const std::string& path, const std::string& mnt) {
  if (mnt == "/") return true;
  return path == mnt || (path.starts_with(mnt) && path[mnt.size()] == '/');
}

}  // namespace

std::string MountPointOf(const std::string& path) {
  // The nearest existing ancestor (the file itself may be what failed to appear).
  std::string p = path;
  struct stat st;
  for (int i = 0; i < 4096 && ::stat(p.empty() ? "." : p.c_str(), &st) != 0; ++i) {
    auto pos = p.find_last_of('/');
    if (pos == std::string::npos || p.size() <= 1) return "";
    p.resize(pos == 0 ? 1 : pos);
  }
  if (p.empty()) p.push_back('.');
  char resolved[4096];
  std::string abs = ::realpath(p.c_str(), resolved) ? std::string(resolved) : p;
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options ...
    std::istringstream fields(line);
    std::string id, parent, devno, root, mnt;
    if (!(fields >> id >> parent >> devno >> root >> mnt)) continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(devno.c_str(), "%u:%u", &maj, &min) != 2) continue;
    if (makedev(maj, min) != st.st_dev) continue;
    mnt = Unescape(mnt);
    // Bind mounts share the device: take the longest mount point that contains the path.
    if (UnderMount(abs, mnt) && mnt.size() >= best.size()) best = mnt;
  }
  return best;
}

Status StatusFromErrnoAt(int err, std::string_view what, const std::string& path) {
  if (err != ENOSPC && err != EDQUOT) return StatusFromErrno(err, what);
  std::string mnt = MountPointOf(path);
  std::string msg(what);
  msg.append(err == ENOSPC ? ": no space left on device: " : ": disk quota exceeded: ");
  msg.append(path);
  if (!mnt.empty()) msg.append(" (filesystem ").append(mnt).append(")");
  return Status(Code::kResourceExhausted, std::move(msg));
}

Status WithFilesystem(Status s, const std::string& path) {
  if (s.code() != Code::kResourceExhausted) return s;
  if (s.message().find("(filesystem ") != std::string::npos) return s;
  const std::string& m = s.message();
  bool full = m.find("No space left on device") != std::string::npos ||
              m.find("database or disk is full") != std::string::npos ||
              m.find("Disk quota exceeded") != std::string::npos;
  if (!full) return s;
  std::string mnt = MountPointOf(path);
  std::string msg = m;
  msg.append(": ").append(path);
  if (!mnt.empty()) msg.append(" (filesystem ").append(mnt).append(")");
  return Status(Code::kResourceExhausted, std::move(msg));
}

}  // namespace berth
