#include "shim/mounts.h"

#include <errno.h>
#include <sys/mount.h>

#include <map>

namespace berth::shim {

namespace {

struct Flag {
  bool clear;
  unsigned long flag;
};

const std::map<std::string, Flag>& Flags() {
  static const std::map<std::string, Flag> m = {
      {"async", {true, MS_SYNCHRONOUS}},  {"atime", {true, MS_NOATIME}},
      {"bind", {false, MS_BIND}},         {"defaults", {false, 0}},
      {"dev", {true, MS_NODEV}},          {"diratime", {true, MS_NODIRATIME}},
      {"dirsync", {false, MS_DIRSYNC}},   {"exec", {true, MS_NOEXEC}},
      {"mand", {false, MS_MANDLOCK}},     {"noatime", {false, MS_NOATIME}},
      {"nodev", {false, MS_NODEV}},       {"nodiratime", {false, MS_NODIRATIME}},
      {"noexec", {false, MS_NOEXEC}},     {"nomand", {true, MS_MANDLOCK}},
      {"norelatime", {true, MS_RELATIME}}, {"nostrictatime", {true, MS_STRICTATIME}},
      {"nosuid", {false, MS_NOSUID}},     {"rbind", {false, MS_BIND | MS_REC}},
      {"relatime", {false, MS_RELATIME}}, {"remount", {false, MS_REMOUNT}},
      {"ro", {false, MS_RDONLY}},         {"rw", {true, MS_RDONLY}},
      {"strictatime", {false, MS_STRICTATIME}}, {"suid", {true, MS_NOSUID}},
      {"sync", {false, MS_SYNCHRONOUS}},
  };
  return m;
}

Status MountOne(const MountSpec& m, const std::string& target) {
  unsigned long flags = 0;
  std::string data;
  for (const auto& o : m.options) {
    auto it = Flags().find(o);
    if (it == Flags().end()) {
      if (!data.empty()) data += ',';
      data += o;
    } else if (it->second.clear) {
      flags &= ~it->second.flag;
    } else {
      flags |= it->second.flag;
    }
  }
  std::string type = m.type;
  if (type == "bind") {
    flags |= MS_BIND;
    type.clear();
  }
  const unsigned long kPropagation = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;
  unsigned long first = flags & ~kPropagation;
  if (::mount(m.source.c_str(), target.c_str(), type.empty() ? nullptr : type.c_str(),
              first & ~((flags & MS_BIND) ? static_cast<unsigned long>(MS_RDONLY) : 0UL),
              data.empty() ? nullptr : data.c_str()) != 0) {
    return StatusFromErrno(errno, "mount " + m.source + " on " + target + " (type " + m.type +
                                      ", options " + data + ")");
  }
  // A bind mount ignores MS_RDONLY on the first call: remount to apply it.
  if ((flags & MS_BIND) && (flags & MS_RDONLY)) {
    if (::mount("", target.c_str(), nullptr, first | MS_REMOUNT, nullptr) != 0) {
      Status st = StatusFromErrno(errno, "remount " + target + " read-only");
      ::umount2(target.c_str(), MNT_DETACH);
      return st;
    }
  }
  return Status();
}

}  // namespace

Status MountAll(const std::vector<MountSpec>& mounts, const std::string& target) {
  size_t done = 0;
  for (const auto& m : mounts) {
    Status st = MountOne(m, target);
    if (!st.ok()) {
      for (size_t i = 0; i < done; ++i) ::umount2(target.c_str(), MNT_DETACH);
      return st;
    }
    ++done;
  }
  return Status();
}

Status UnmountAll(const std::string& target) {
  for (int i = 0; i < 64; ++i) {
    if (::umount2(target.c_str(), MNT_DETACH) != 0) {
      if (errno == EINVAL || errno == ENOENT) return Status();
      return StatusFromErrno(errno, "unmount " + target);
    }
  }
  return Internal("unmount " + target + ": still mounted after 64 unmounts");
}

}  // namespace berth::shim
