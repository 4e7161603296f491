#include "cli/mounts.h"

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

namespace berth::cli {
namespace {

struct FlagOption {
  std::string_view name;
  bool clear;  // the option removes the flag ("rw", "dev", ...)
  unsigned long flag;
};

// fstab words that are mount(2) flags rather than filesystem data.
constexpr FlagOption kFlagOptions[] = {
    {"async", true, MS_SYNCHRONOUS},
    {"atime", true, MS_NOATIME},
    {"bind", false, MS_BIND},
    {"defaults", false, 0},
    {"dev", true, MS_NODEV},
    {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},
    {"exec", true, MS_NOEXEC},
    {"noatime", false, MS_NOATIME},
    {"nodev", false, MS_NODEV},
    {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},
    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"nosuid", false, MS_NOSUID},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"strictatime", false, MS_STRICTATIME},
    {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
};

// Propagation changes are a separate mount(2) call on the finished mount.
constexpr std::pair<std::string_view, unsigned long> kPropagation[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

struct Parsed {
  unsigned long flags = 0;
  unsigned long propagation = 0;
  std::string data;
};

Parsed ParseOptions(const containerd::types::Mount& m) {
  Parsed p;
  for (const auto& o : m.options()) {
    bool known = false;
    for (const auto& f : kFlagOptions) {
      if (o == f.name) {
        p.flags = f.clear ? p.flags & ~f.flag : p.flags | f.flag;
        known = true;
        break;
      }
    }
    for (const auto& [name, flag] : kPropagation) {
      if (!known && o == name) {
        p.propagation |= flag;
        known = true;
      }
    }
    if (!known) {
      if (!p.data.empty()) p.data += ',';
      p.data += o;
    }
  }
  return p;
}

Status MountOne(const containerd::types::Mount& m, const std::string& target) {
  Parsed p = ParseOptions(m);
  std::string what = "mount " + m.type() + " " + m.source() + " on " + target;
  // The data string is one page at most; overlays of very many layers exceed it.
  if (p.data.size() >= static_cast<size_t>(::sysconf(_SC_PAGESIZE))) {
    return InvalidArgument(what + ": mount options are " + std::to_string(p.data.size()) +
                           " bytes, more than the kernel takes");
  }
  std::string type = m.type() == "bind" ? "none" : m.type();
  bool bind = (p.flags & MS_BIND) != 0;
  // A bind ignores MS_RDONLY (and the other per-mount flags); they take a remount.
  unsigned long first = bind ? p.flags & ~(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) : p.flags;
  if (::mount(m.source().c_str(), target.c_str(), type.c_str(), first,
              p.data.empty() ? nullptr : p.data.c_str()) != 0) {
    return StatusFromErrno(errno, what);
  }
  unsigned long remount = p.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
  if (bind && remount != 0 &&
      ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | remount, nullptr) != 0) {
    Status s = StatusFromErrno(errno, "remount bind " + target + " (ro/nosuid/nodev/noexec)");
    ::umount2(target.c_str(), MNT_DETACH);
    return s;
  }
  if (p.propagation != 0 &&
      ::mount(nullptr, target.c_str(), nullptr, p.propagation, nullptr) != 0) {
    Status s = StatusFromErrno(errno, "set propagation of " + target);
    ::umount2(target.c_str(), MNT_DETACH);
    return s;
  }
  return Status::Ok();
}

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
  int done = 0;
  for (const auto& m : mounts) {
    if (Status s = MountOne(m, target); !s.ok()) {
      for (; done > 0; --done) ::umount2(target.c_str(), MNT_DETACH);
      return s;
    }
    ++done;
  }
  return Status::Ok();
}

Status UnmountAll(const std::string& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0 && errno == ENOENT) return Status::Ok();
  for (;;) {
    int busy = 0;
    while (::umount2(target.c_str(), 0) != 0) {
      if (errno == EINVAL) return Status::Ok();  // no mount point (any more)
      if (errno != EBUSY || ++busy >= 50) return StatusFromErrno(errno, "unmount " + target);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
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

}  // namespace berth::cli
