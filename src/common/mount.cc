#include "common/mount.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "common/log.h"

namespace berth {
namespace {

struct FlagWord {
  std::string_view word;
  bool clear;  // the word turns the flag off ("rw" clears MS_RDONLY)
  unsigned long flag;
};

constexpr FlagWord kFlagWords[] = {
    {"async", true, MS_SYNCHRONOUS},
    {"atime", true, MS_NOATIME},
    {"bind", false, MS_BIND},
    {"defaults", false, 0},
    {"dev", true, MS_NODEV},
    {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},
    {"exec", true, MS_NOEXEC},
    {"mand", false, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},
    {"nodev", false, MS_NODEV},
    {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},
    {"nomand", true, MS_MANDLOCK},
    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"nosuid", false, MS_NOSUID},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"remount", false, MS_REMOUNT},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"strictatime", false, MS_STRICTATIME},
    {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
    {"private", false, MS_PRIVATE},
    {"rprivate", false, MS_PRIVATE | MS_REC},
    {"shared", false, MS_SHARED},
    {"rshared", false, MS_SHARED | MS_REC},
    {"slave", false, MS_SLAVE},
    {"rslave", false, MS_SLAVE | MS_REC},
    {"unbindable", false, MS_UNBINDABLE},
    {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

constexpr unsigned long kPropagation = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

}  // namespace

bool HasMountOption(const Mount& m, std::string_view option) {
  for (const auto& o : m.options) {
    if (o == option) return true;
  }
  return false;
}

std::string MountOptionValue(const Mount& m, std::string_view key) {
  for (const auto& o : m.options) {
    if (o.size() > key.size() && o.starts_with(key) && o[key.size()] == '=') {
      return o.substr(key.size() + 1);
    }
  }
  return "";
}

std::vector<Mount> ReadonlyMounts(std::vector<Mount> mounts) {
  for (Mount& m : mounts) {
    std::vector<std::string> out;
    if (m.type == "overlay") {
      std::string upper;
      for (auto& o : m.options) {
        if (o.starts_with("upperdir=")) {
          upper = o.substr(9);
        } else if (!o.starts_with("workdir=")) {
          out.push_back(std::move(o));
        }
      }
      if (!upper.empty()) {
        for (auto& o : out) {
          if (o.starts_with("lowerdir=")) o = "lowerdir=" + upper + ":" + o.substr(9);
        }
      }
    } else {
      for (auto& o : m.options) {
        if (o != "rw" && o != "ro") out.push_back(std::move(o));
      }
      out.emplace_back("ro");
    }
    m.options = std::move(out);
  }
  return mounts;
}

namespace {

// The kernel copies at most one page of mount data. Past this size (containerd's threshold:
// page size - 512) overlay lowerdirs are rewritten relative to their common parent and the
// mount is made from there.
constexpr size_t kCompactOverlayAt = 4096 - 512;

// Rewrites "lowerdir=" in `data` relative to the lowerdirs' longest common parent directory;
// returns that directory ("" when there is none to gain from).
std::string CompactLowerdirs(std::string& data) {
  size_t start = data.starts_with("lowerdir=") ? 0 : data.find(",lowerdir=");
  if (start == std::string::npos) return "";
  if (start != 0) ++start;
  size_t end = data.find(',', start);
  if (end == std::string::npos) end = data.size();
  std::string value = data.substr(start + 9, end - start - 9);
  std::vector<std::string> dirs;
  for (size_t i = 0; i <= value.size();) {
    size_t j = value.find(':', i);
    if (j == std::string::npos) j = value.size();
    dirs.push_back(value.substr(i, j - i));
    i = j + 1;
  }
  std::string common = dirs[0].substr(0, dirs[0].rfind('/') + 1);
  for (const auto& d : dirs) {
    while (!common.empty() && !d.starts_with(common)) {
      common.pop_back();
      common.erase(common.rfind('/') + 1);
    }
  }
  if (common.size() <= 1 || common[0] != '/') return "";
  std::string rel;
  for (const auto& d : dirs) {
    if (!rel.empty()) rel += ':';
    rel += d.substr(common.size());
  }
  data.replace(start + 9, end - start - 9, rel);
  return common;
}

// mount(2) with relative paths resolved from `cwd`: on a thread of its own with a private
// fs context (unshare(CLONE_FS)), so the process's working directory never changes.
int MountFrom(const std::string& cwd, const char* source, const char* target, const char* type,
              unsigned long flags, const char* data) {
  int err = 0;
  std::thread t([&] {
    if (::unshare(CLONE_FS) != 0 || ::chdir(cwd.c_str()) != 0 ||
        ::mount(source, target, type, flags, data) != 0) {
      err = errno;
    }
  });
  t.join();
  return err;
}

}  // namespace

Result<std::unique_ptr<TempMount>> TempMount::Make(const std::string& base,
                                                   std::span<const Mount> mounts,
                                                   std::string_view prefix) {
  if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(StatusFromErrno(errno, "mkdir " + base));
  }
  std::string tmpl = base + "/" + std::string(prefix) + "XXXXXX";
  if (!::mkdtemp(tmpl.data())) return std::unexpected(StatusFromErrno(errno, "mkdtemp " + tmpl));
  auto t = std::unique_ptr<TempMount>(new TempMount(tmpl));
  for (const Mount& m : mounts) RETURN_IF_ERROR(t->MountOne(m));
  return t;
}

Status MountOn(const Mount& m, const std::string& target) {
  unsigned long flags = 0;
  std::string data;
  for (const auto& o : m.options) {
    const FlagWord* word = nullptr;
    for (const FlagWord& w : kFlagWords) {
      if (w.word == o) word = &w;
    }
    if (word == nullptr) {
      if (!data.empty()) data += ',';
      data += o;
    } else if (word->clear) {
      flags &= ~word->flag;
    } else {
      flags |= word->flag;
    }
  }
  const std::string what = "mount " + m.type + " " + m.source + " on " + target;
  const unsigned long propagation =
      (flags & kPropagation) != 0 ? flags & (kPropagation | MS_REC) : 0;
  const unsigned long base_flags = flags & ~kPropagation;
  const bool bind = (base_flags & MS_BIND) != 0;
  // A bind ignores MS_RDONLY and the other per-mount flags; they take a remount afterwards.
  constexpr unsigned long kPerMount = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  const unsigned long first = bind ? base_flags & ~kPerMount : base_flags;
  const std::string type = m.type == "bind" ? "none" : m.type;
  std::string cwd;
  if (type == "overlay" && data.size() >= kCompactOverlayAt) cwd = CompactLowerdirs(data);
  const char* data_arg = data.empty() ? nullptr : data.c_str();
  if (!cwd.empty()) {
    if (int err = MountFrom(cwd, m.source.c_str(), target.c_str(), type.c_str(), first, data_arg);
        err != 0) {
      return StatusFromErrno(err, what);
    }
  } else if (::mount(m.source.c_str(), target.c_str(), type.c_str(), first, data_arg) != 0) {
    return StatusFromErrno(errno, what);
  }
  auto undo = [&](Status s) {
    ::umount2(target.c_str(), MNT_DETACH);
    return s;
  };
  if (bind && (base_flags & kPerMount) != 0 &&
      ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | (base_flags & kPerMount),
              nullptr) != 0) {
    return undo(StatusFromErrno(errno, what + " (ro/nosuid/nodev/noexec remount)"));
  }
  if (propagation != 0 && ::mount(nullptr, target.c_str(), nullptr, propagation, nullptr) != 0) {
    return undo(StatusFromErrno(errno, what + " (propagation)"));
  }
  return Status::Ok();
}

Status MountAll(std::span<const Mount> mounts, const std::string& target) {
  size_t done = 0;
  for (const Mount& m : mounts) {
    if (Status s = MountOn(m, target); !s.ok()) {
      for (; done > 0; --done) ::umount2(target.c_str(), MNT_DETACH);
      return s;
    }
    ++done;
  }
  return Status::Ok();
}

Status UnmountAll(const std::string& target, int flags) {
  for (;;) {
    int busy = 0;
    while (::umount2(target.c_str(), flags) != 0) {
      if (errno == EINVAL || errno == ENOENT) return Status::Ok();  // no mount point (left)
      if (errno != EBUSY || ++busy >= 50) return StatusFromErrno(errno, "unmount " + target);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

Status TempMount::MountOne(const Mount& m) {
  RETURN_IF_ERROR(MountOn(m, dir_));
  ++mounted_;
  return Status::Ok();
}

TempMount::~TempMount() {
  for (; mounted_ > 0; --mounted_) {
    if (::umount2(dir_.c_str(), MNT_DETACH) != 0) {
      spdlog::warn("unmount {}: {}", dir_, std::strerror(errno));
      return;  // keep the directory: rmdir of a still-mounted dir would fail anyway
    }
  }
  if (::rmdir(dir_.c_str()) != 0) spdlog::warn("remove {}: {}", dir_, std::strerror(errno));
}

namespace {

// A mountinfo path field: blanks, tabs, newlines and backslashes come as \ooo octal escapes.
std::string UnescapeMountPath(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 3 < in.size() && in[i + 1] >= '0' && in[i + 1] <= '3') {
      out += static_cast<char>((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 + (in[i + 3] - '0'));
      i += 3;
    } else {
      out += in[i];
    }
  }
  return out;
}

}  // namespace

Result<int> CleanupTempMounts(const std::string& base) {
  char resolved[PATH_MAX];
  if (::realpath(base.c_str(), resolved) == nullptr) {
    if (errno == ENOENT) return 0;
    return std::unexpected(StatusFromErrno(errno, "resolve " + base));
  }
  const std::string dir = resolved;
  const std::string prefix = dir + "/";
  std::ifstream mi("/proc/self/mountinfo");
  if (!mi) return std::unexpected(Internal("cannot read /proc/self/mountinfo"));
  std::vector<std::string> points;
  std::string line;
  while (std::getline(mi, line)) {
    // "<id> <parent> <major:minor> <root> <mount point> ...": the fifth field.
    std::istringstream fields(line);
    std::string f, mp;
    for (int i = 0; i < 5 && fields >> f; ++i) mp = f;
    mp = UnescapeMountPath(mp);
    if (mp.starts_with(prefix)) points.push_back(std::move(mp));
  }
  // Deepest first: a mount inside a temp mount goes before the one holding it. A stacked
  // mount point appears more than once; UnmountAll takes the whole stack the first time.
  std::sort(points.begin(), points.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  points.erase(std::unique(points.begin(), points.end()), points.end());
  int unmounted = 0;
  for (const auto& mp : points) {
    if (Status s = UnmountAll(mp, MNT_DETACH); !s.ok()) {
      spdlog::warn("cleanup temp mount: {}", s.ToString());
      continue;
    }
    ++unmounted;
  }
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return std::unexpected(StatusFromErrno(errno, "open " + dir));
  while (const dirent* e = ::readdir(d.get())) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = prefix + std::string(n);
    // rmdir only: anything still mounted or not empty stays for a human to look at.
    if (::rmdir(p.c_str()) != 0) spdlog::warn("cleanup temp mount: remove {}: {}", p, std::strerror(errno));
  }
  if (unmounted > 0) spdlog::info("cleaned up {} temp mounts under {}", unmounted, dir);
  return unmounted;
}

}  // namespace berth
