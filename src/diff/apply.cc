#include "diff/apply.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "common/fs.h"
#include "common/mountinfo.h"
#include "content/digest.h"

namespace berth::diff {
namespace {

// A tar's uid/gid as the kernel's 32-bit id: truncated exactly as containerd's Go Lchown passes
// it (a layer can name uid 0 outright, so this grants nothing the format does not).
uid_t TarId(la_int64_t id) { return static_cast<uid_t>(id); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ---------------------------------------------------------------------------------------------
// Paths

// filepath.Clean of `name` relative to "/": components, with "." dropped and ".." clamped at
// the root. Empty result = the root itself.
std::vector<std::string> CleanComponents(std::string_view name) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string_view::npos) j = name.size();
    std::string_view c = name.substr(i, j - i);
    if (c.empty() || c == ".") {
    } else if (c == "..") {
      if (!out.empty()) out.pop_back();
    } else {
      out.emplace_back(c);
    }
    i = j + 1;
  }
  return out;
}

std::string Join(const std::vector<std::string>& comps, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += '/';
    s += comps[i];
  }
  return s.empty() ? "." : s;
}

int OpenInRoot(int rootfd, const std::string& rel, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    int fd = static_cast<int>(::syscall(SYS_openat2, rootfd, rel.c_str(), &how, sizeof how));
    if (fd < 0 && errno == EAGAIN) continue;
    return fd;
  }
}

// containerd's boundTime: a time before the epoch or past what int64 nanoseconds hold
// (2262-04-11T23:47:16.854775807Z) becomes the epoch itself.
timespec BoundTime(int64_t sec, long nsec) {
  constexpr int64_t kMaxSec = INT64_MAX / 1000000000;  // 9223372036
  constexpr long kMaxNsec = INT64_MAX % 1000000000;     // 854775807
  if (sec < 0 || nsec < 0 || sec > kMaxSec || (sec == kMaxSec && nsec > kMaxNsec)) {
    return timespec{0, 0};
  }
  return timespec{static_cast<time_t>(sec), nsec};
}

bool Before(int64_t s1, long n1, int64_t s2, long n2) { return s1 < s2 || (s1 == s2 && n1 < n2); }

// {atime, mtime} for utimensat as containerd sets them: atime is the later of the header's
// atime (when present) and mtime; both bounded.
void EntryTimes(archive_entry* e, timespec ts[2]) {
  int64_t ms = archive_entry_mtime(e);
  long mn = archive_entry_mtime_nsec(e);
  int64_t as = ms;
  long an = mn;
  if (archive_entry_atime_is_set(e) &&
      !Before(archive_entry_atime(e), archive_entry_atime_nsec(e), ms, mn)) {
    as = archive_entry_atime(e);
    an = archive_entry_atime_nsec(e);
  }
  ts[0] = BoundTime(as, an);
  ts[1] = BoundTime(ms, mn);
}

// Copies the user-visible xattrs (all but trusted.*) of `src` onto `dst`, both O_PATH fds.
Status CopyXattrs(int src, int dst, const std::string& what) {
  std::string sp = "/proc/self/fd/" + std::to_string(src);
  std::string dp = "/proc/self/fd/" + std::to_string(dst);
  std::string names(64 * 1024, '\0');
  ssize_t n = ::listxattr(sp.c_str(), names.data(), names.size());
  if (n < 0) {
    if (errno == ENOTSUP || errno == ENODATA) return {};
    return StatusFromErrno(errno, "list xattrs of the lower " + what);
  }
  std::string value(64 * 1024, '\0');
  for (size_t i = 0; i < static_cast<size_t>(n);) {
    std::string name(names.c_str() + i);
    i += name.size() + 1;
    if (name.empty() || name.starts_with("trusted.")) continue;
    ssize_t v = ::getxattr(sp.c_str(), name.c_str(), value.data(), value.size());
    if (v < 0) {
      if (errno == ENOTSUP || errno == ENODATA) continue;
      return StatusFromErrno(errno, "get xattr " + name + " of the lower " + what);
    }
    if (::setxattr(dp.c_str(), name.c_str(), value.data(), static_cast<size_t>(v), 0) != 0) {
      return StatusFromErrno(errno, "copy xattr " + name + " to " + what);
    }
  }
  return {};
}

struct DirTimes {
  std::vector<std::string> comps;
  timespec ts[2];
};

class Extractor {
 public:
  Extractor(int rootfd, const ApplyOptions& opts) : rootfd_(rootfd), opts_(opts) {
    for (const auto& l : opts.lowerdirs) {
      Fd fd(::open(l.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (fd.valid()) lowers_.push_back(std::move(fd));
    }
  }

  Status Entry(archive* a, archive_entry* e);
  // Data blocks in this range are synthetic (see CallbackState): the archive was truncated.
  std::function<bool(const void*)> synthetic;
  Status Finish();

 private:
  // O_PATH fd of the directory comps[0..n) inside the root, creating missing ones 0755.
  Result<Fd> Parent(const std::vector<std::string>& comps, size_t n, bool create = true);
  Status Whiteout(const std::vector<std::string>& comps, const std::string& base, uid_t uid,
                  gid_t gid);
  Status Opaque(const std::vector<std::string>& dir);
  Status ClearUnpacked(int dirfd, const std::string& rel);
  Status SetMeta(int parent, const std::string& name, archive_entry* e, bool is_link);

  int rootfd_;
  const ApplyOptions& opts_;

 public:
  // Largest regular-file size the stream can hold (T7); INT64_MAX when unknown.
  int64_t max_entry_size = INT64_MAX;
  std::string entry_bound_hint;  // appended to the error when an entry exceeds it

 private:
  std::vector<Fd> lowers_;
  std::set<std::string> unpacked_;
  std::vector<DirTimes> dirs_;
};

Result<Fd> Extractor::Parent(const std::vector<std::string>& comps, size_t n, bool create) {
  Fd fd(OpenInRoot(rootfd_, Join(comps, n), O_PATH | O_DIRECTORY));
  if (fd.valid()) return fd;
  if (errno != ENOENT || !create) {
    return std::unexpected(StatusFromErrno(errno, "resolve " + Join(comps, n)));
  }
  // Something is missing: walk from the root component by component, following symlinks as
  // if the root were "/" (absolute targets and ".." are clamped to it), creating missing
  // directories. `resolved` never contains a symlink; each step reopens it from the root.
  std::vector<std::string> resolved;
  std::vector<std::string> todo(comps.rbegin() + static_cast<long>(comps.size() - n), comps.rend());
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.back());
    todo.pop_back();
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (!resolved.empty()) resolved.pop_back();
      continue;
    }
    std::string here = Join(resolved, resolved.size());
    Fd cur(OpenInRoot(rootfd_, here, O_PATH | O_DIRECTORY));
    if (!cur.valid()) return std::unexpected(StatusFromErrno(errno, "resolve " + here));
    struct stat st;
    if (::fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) {
        if (++links > 40) return std::unexpected(InvalidArgument("too many symlinks under " + here));
        std::string target(PATH_MAX, '\0');
        ssize_t len = ::readlinkat(cur.get(), c.c_str(), target.data(), target.size());
        if (len < 0) return std::unexpected(StatusFromErrno(errno, "readlink " + c));
        target.resize(static_cast<size_t>(len));
        if (target.starts_with("/")) resolved.clear();
        std::vector<std::string> tc;
        for (size_t i = 0; i <= target.size();) {
          size_t j = target.find('/', i);
          if (j == std::string::npos) j = target.size();
          if (j > i) tc.push_back(target.substr(i, j - i));
          i = j + 1;
        }
        // The target's components come before what remains.
        for (auto it = tc.rbegin(); it != tc.rend(); ++it) todo.push_back(*it);
        continue;
      }
      if (!S_ISDIR(st.st_mode)) {
        return std::unexpected(Status(Code::kFailedPrecondition,
                                      "not a directory: " + (here == "." ? c : here + "/" + c)));
      }
      resolved.push_back(c);
      continue;
    }
    if (errno != ENOENT) return std::unexpected(StatusFromErrno(errno, "stat " + c));
    if (::mkdirat(cur.get(), c.c_str(), 0755) != 0) {
      if (errno != EEXIST) return std::unexpected(StatusFromErrno(errno, "mkdir " + c));
      resolved.push_back(c);
      continue;  // created meanwhile: not ours to set up
    }
    // 0755 whatever the umask.
    if (::fchmodat(cur.get(), c.c_str(), 0755, 0) != 0) {
      return std::unexpected(StatusFromErrno(errno, "chmod " + c));
    }
    resolved.push_back(c);
    std::string rel = Join(resolved, resolved.size());
    if (opts_.mode == WhiteoutMode::kOverlay) {
      // As containerd's mkparent: the topmost lower that has the path decides. A directory
      // there lends its owner, mode, times and (non-trusted) xattrs; anything else (a
      // whiteout, a file) means the directory is new, and it keeps the defaults.
      for (auto& l : lowers_) {
        Fd lf(OpenInRoot(l.get(), rel, O_PATH));
        if (!lf.valid()) {
          if (errno == ENOENT) continue;
          break;  // ENOTDIR and the like: a non-directory on the way
        }
        if (::fstat(lf.get(), &st) != 0) {
          return std::unexpected(StatusFromErrno(errno, "stat lower " + rel));
        }
        if (!S_ISDIR(st.st_mode)) break;
        timespec ts[2] = {st.st_atim, st.st_mtim};
        if (::fchownat(cur.get(), c.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 ||
            ::fchmodat(cur.get(), c.c_str(), st.st_mode & 07777, 0) != 0 ||
            ::utimensat(cur.get(), c.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
          return std::unexpected(StatusFromErrno(errno, "copy lower attributes to " + rel));
        }
        Fd nf(::openat(cur.get(), c.c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
        if (!nf.valid()) return std::unexpected(StatusFromErrno(errno, "open " + rel));
        if (Status xs = CopyXattrs(lf.get(), nf.get(), rel); !xs.ok()) return std::unexpected(xs);
        break;
      }
    }
  }
  Fd out(OpenInRoot(rootfd_, Join(resolved, resolved.size()), O_PATH | O_DIRECTORY));
  if (!out.valid()) return std::unexpected(StatusFromErrno(errno, "resolve " + Join(comps, n)));
  return out;
}

Status Extractor::ClearUnpacked(int dirfd, const std::string& rel) {
  // Kept directories are visited from a work list (paths below `dirfd`), not by recursion:
  // their depth is the layer's to choose. Each kept path is a name this layer wrote, so it is
  // shorter than PATH_MAX and opens in one openat2 that refuses symlinks.
  std::vector<std::string> todo{""};
  const std::string prefix = rel == "." ? "" : rel + "/";
  while (!todo.empty()) {
    std::string sub = std::move(todo.back());
    todo.pop_back();
    Fd d;
    if (sub.empty()) {
      d = Fd(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
      if (!d.valid()) return StatusFromErrno(errno, "dup");
    } else {
      open_how how{};
      how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
      d = Fd(static_cast<int>(::syscall(SYS_openat2, dirfd, sub.c_str(), &how, sizeof how)));
      if (!d.valid()) continue;  // not a directory (any more): nothing below to clear
    }
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirAt(d.get()));
    for (const auto& n : names) {
      std::string below = sub.empty() ? n : sub + "/" + n;
      if (unpacked_.contains(prefix + below)) {
        // Kept; descend into kept directories to drop what this layer did not write there.
        struct stat st;
        if (::fstatat(d.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
          todo.push_back(std::move(below));
        }
        continue;
      }
      RETURN_IF_ERROR(RemoveAllAt(d.get(), n, kMaxRemoveDepth));
    }
  }
  return {};
}

Status Extractor::Opaque(const std::vector<std::string>& dir) {
  auto pfd = Parent(dir, dir.size());
  if (!pfd) return pfd.error();
  std::string rel = Join(dir, dir.size());
  Fd d(OpenInRoot(rootfd_, rel, O_RDONLY | O_DIRECTORY));
  if (!d.valid()) return StatusFromErrno(errno, "open " + rel);
  if (opts_.mode == WhiteoutMode::kOverlay) {
    std::string p = "/proc/self/fd/" + std::to_string(d.get());
    if (::setxattr(p.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
      return StatusFromErrno(errno, "set opaque xattr on " + rel);
    }
    return {};
  }
  return ClearUnpacked(d.get(), rel);
}

Status Extractor::Whiteout(const std::vector<std::string>& comps, const std::string& base,
                           uid_t uid, gid_t gid) {
  std::vector<std::string> dir(comps.begin(), comps.end() - 1);
  if (base == ".wh..wh..opq") return Opaque(dir);
  if (base.starts_with(".wh..wh.")) return {};  // AUFS bookkeeping (.wh..wh.plnk …): skip
  std::string target = base.substr(4);
  if (target.empty() || target == "." || target == ".." ||
      target.find('/') != std::string::npos) {
    return InvalidArgument("invalid whiteout name: " + Join(comps, comps.size()) +
                           " (target leaves its directory)");
  }
  auto pfd = Parent(dir, dir.size());
  if (!pfd) return pfd.error();
  int p = pfd->get();
  RETURN_IF_ERROR(RemoveAllAt(p, target, kMaxRemoveDepth));
  if (opts_.mode == WhiteoutMode::kOverlay) {
    if (::mknodat(p, target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return StatusFromErrno(errno, "mknod whiteout " + target);
    }
    if (::fchownat(p, target.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return StatusFromErrno(errno, "chown whiteout " + target);
    }
  }
  return {};
}

Status Extractor::SetMeta(int parent, const std::string& name, archive_entry* e, bool is_link) {
  const char* n = name.c_str();
  if (::fchownat(parent, n, TarId(archive_entry_uid(e)), TarId(archive_entry_gid(e)),
                 AT_SYMLINK_NOFOLLOW) != 0) {
    return StatusFromErrno(errno, "lchown " + name);
  }
  if (!is_link) {
    // xattrs through an O_PATH handle on exactly this inode.
    archive_entry_xattr_reset(e);
    const char* xname;
    const void* value;
    size_t size;
    Fd fd;
    while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK) {
      // As containerd: admin (trusted.*) attributes are never taken from a layer; they would
      // steer overlayfs (trusted.overlay.opaque, .redirect, .metacopy …).
      if (std::string_view(xname).starts_with("trusted.")) continue;
      if (!fd.valid()) {
        fd = Fd(::openat(parent, n, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!fd.valid()) return StatusFromErrno(errno, "open " + name);
      }
      std::string p = "/proc/self/fd/" + std::to_string(fd.get());
      if (::setxattr(p.c_str(), xname, value, size, 0) != 0) {
        int err = errno;
        if (err == ENOTSUP) continue;
        // user.* exists only on regular files and directories (xattr(7)); judged on the inode
        // itself, which for a hardlink entry is whatever it links to.
        struct stat xs;
        bool special = ::fstat(fd.get(), &xs) == 0 && !S_ISREG(xs.st_mode) && !S_ISDIR(xs.st_mode);
        if (err == EPERM && std::string_view(xname).starts_with("user.") && special) continue;
        return StatusFromErrno(err, std::string("setxattr ") + xname + " on " + name);
      }
    }
    // Mode incl. setuid/setgid/sticky; after chown, which clears them. Not on symlinks.
    if (::fchmodat(parent, n, archive_entry_mode(e) & 07777, 0) != 0) {
      return StatusFromErrno(errno, "chmod " + name);
    }
  }
  timespec ts[2];
  EntryTimes(e, ts);
  if (::utimensat(parent, n, ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return StatusFromErrno(errno, "utimes " + name);
  }
  return {};
}

Status Extractor::Entry(archive* a, archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  if (!raw) return InvalidArgument("tar entry without a name");
  std::string_view rawv(raw);
  if (rawv.size() >= PATH_MAX) return InvalidArgument("tar entry name longer than PATH_MAX");
  std::vector<std::string> comps = CleanComponents(rawv);
  if (comps.empty()) return {};  // the root itself
  const std::string base = comps.back();
  if (base.size() > NAME_MAX) return InvalidArgument("tar entry name component too long");
  std::string rel = Join(comps, comps.size());
  if (base.starts_with(".wh.")) {
    return Whiteout(comps, base, TarId(archive_entry_uid(e)), TarId(archive_entry_gid(e)));
  }
  auto pfd = Parent(comps, comps.size() - 1);
  if (!pfd) return pfd.error();
  int p = pfd->get();
  const char* n = base.c_str();

  const char* hardlink = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  bool is_dir = !hardlink && type == AE_IFDIR;

  struct stat st;
  if (::fstatat(p, n, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!(is_dir && S_ISDIR(st.st_mode))) RETURN_IF_ERROR(RemoveAllAt(p, base, kMaxRemoveDepth));
  } else if (errno != ENOENT) {
    return StatusFromErrno(errno, "stat " + rel);
  }

  bool is_link = false;
  if (hardlink) {
    if (std::string_view(hardlink).size() >= PATH_MAX) return InvalidArgument("link name too long");
    std::vector<std::string> t = CleanComponents(hardlink);
    if (t.empty()) return InvalidArgument("hardlink to the root: " + rel);
    auto tfd = Parent(t, t.size() - 1, /*create=*/false);
    if (!tfd) return tfd.error();
    if (::linkat(tfd->get(), t.back().c_str(), p, n, 0) != 0) {
      return StatusFromErrno(errno, "link " + rel + " -> " + hardlink);
    }
    // As containerd, the link entry's own owner, xattrs, mode and times are then applied to
    // the shared inode (never through a symlink: a link to a symlink is the symlink).
    if (::fstatat(p, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return StatusFromErrno(errno, "stat " + rel);
    }
    RETURN_IF_ERROR(SetMeta(p, base, e, S_ISLNK(st.st_mode)));
    unpacked_.insert(rel);
    return {};
  }
  switch (type) {
    case AE_IFDIR:
      if (::mkdirat(p, n, 0700) != 0 && errno != EEXIST) return StatusFromErrno(errno, "mkdir " + rel);
      break;
    case AE_IFREG: {
      if (archive_entry_size(e) > max_entry_size) {
        return InvalidArgument("tar entry " + rel + " claims " +
                               std::to_string(archive_entry_size(e)) +
                               " bytes, more than the layer can hold" + entry_bound_hint);
      }
      Fd fd(::openat(p, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.valid()) return StatusFromErrno(errno, "create " + rel);
      const void* buf;
      size_t size;
      la_int64_t off;
      int64_t end = 0;
      for (;;) {
        int rc = archive_read_data_block(a, &buf, &size, &off);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
          return Status(Code::kDataLoss, std::string("read tar data of ") + rel + ": " +
                                             (archive_error_string(a) ?: "error"));
        }
        if (size > 0 && synthetic && synthetic(buf)) {
          return Status(Code::kDataLoss, "tar data of " + rel + " truncated: unexpected EOF");
        }
        const char* c = static_cast<const char*>(buf);
        size_t done = 0;
        while (done < size) {
          ssize_t w = ::pwrite(fd.get(), c + done, size - done, off + static_cast<off_t>(done));
          if (w < 0) {
            if (errno == EINTR) continue;
            return StatusFromErrno(errno, "write " + rel);
          }
          done += static_cast<size_t>(w);
        }
        end = std::max<int64_t>(end, off + static_cast<int64_t>(size));
      }
      // Sparse tails: the file has its declared size.
      if (archive_entry_size_is_set(e) && archive_entry_size(e) > end) {
        if (::ftruncate(fd.get(), archive_entry_size(e)) != 0) {
          return StatusFromErrno(errno, "truncate " + rel);
        }
      }
      break;
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (!target) return InvalidArgument("symlink without target: " + rel);
      if (::symlinkat(target, p, n) != 0) return StatusFromErrno(errno, "symlink " + rel);
      is_link = true;
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      mode_t m = (type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO) |
                 (archive_entry_mode(e) & 0777);
      dev_t dev = type == AE_IFIFO ? 0
                                   : makedev(static_cast<unsigned>(archive_entry_rdevmajor(e)),
                                             static_cast<unsigned>(archive_entry_rdevminor(e)));
      if (::mknodat(p, n, m, dev) != 0) return StatusFromErrno(errno, "mknod " + rel);
      break;
    }
    default:
      return InvalidArgument("unhandled tar entry type " + std::to_string(type) + " for " + rel);
  }
  RETURN_IF_ERROR(SetMeta(p, base, e, is_link));
  if (type == AE_IFDIR) {
    DirTimes d{comps, {}};
    EntryTimes(e, d.ts);
    dirs_.push_back(std::move(d));
  }
  unpacked_.insert(rel);
  return {};
}

Status Extractor::Finish() {
  for (const auto& d : dirs_) {
    auto pfd = Parent(d.comps, d.comps.size() - 1, /*create=*/false);
    if (!pfd) continue;  // replaced later in the layer
    ::utimensat(pfd->get(), d.comps.back().c_str(), d.ts, AT_SYMLINK_NOFOLLOW);  // best effort
  }
  return {};
}

// libarchive read callback over the hashing stream.
//
// Go's archive/tar (containerd) accepts a stream that ends right after an entry's data, with
// no padding and no end marker (umoci writes such layers); libarchive does not. So at EOF we
// serve, once, zeros up to the next 512-byte record plus an end marker. Those bytes are never
// hashed, and file data that comes from them is a truncated archive (DataLoss).
struct CallbackState {
  ReadAhead* stream;
  Status error;
  std::string pad;
  bool eof = false;

  bool Synthetic(const void* p) const {
    auto* c = static_cast<const char*>(p);
    return !pad.empty() && c >= pad.data() && c < pad.data() + pad.size();
  }
};

la_ssize_t ReadCallback(archive* a, void* data, const void** out) {
  auto* s = static_cast<CallbackState*>(data);
  if (s->eof) return 0;
  auto got = s->stream->Next();
  if (!got) {
    s->error = got.error();
    archive_set_error(a, EIO, "%s", s->error.message().c_str());
    return -1;
  }
  if (got->empty()) {
    s->eof = true;
    if (s->stream->size() == 0) return 0;
    size_t rem = static_cast<size_t>(s->stream->size() % 512);
    s->pad.assign((rem ? 512 - rem : 0) + 1024, '\0');
    *out = s->pad.data();
    return static_cast<la_ssize_t>(s->pad.size());
  }
  *out = got->data();
  return static_cast<la_ssize_t>(got->size());
}

}  // namespace

Result<Compression> CompressionForMediaType(std::string_view mt) {
  // Suffixes after '+' are sorted in containerd; we accept the single-suffix forms.
  static const std::map<std::string_view, Compression> kTypes = {
      {"application/vnd.oci.image.layer.v1.tar", Compression::kNone},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar", Compression::kNone},
      {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::kGzip},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression::kGzip},
      {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::kZstd},
      {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Compression::kZstd},
      {"application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::kGzip},
      {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression::kGzip},
      {"application/vnd.docker.image.rootfs.diff.tar", Compression::kDetect},
      {"application/vnd.docker.image.rootfs.foreign.diff.tar", Compression::kDetect},
  };
  auto it = kTypes.find(mt);
  if (it == kTypes.end()) {
    return Err(Code::kUnimplemented, "unsupported diff media type: " + std::string(mt));
  }
  return it->second;
}

Result<ApplyResult> ApplyLayer(content::ReaderAt& blob, std::string_view media_type,
                               const std::string& root, const ApplyOptions& opts) {
  ASSIGN_OR_RETURN(Compression c, CompressionForMediaType(media_type));
  Fd rootfd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!rootfd.valid()) return std::unexpected(StatusFromErrno(errno, "open " + root));
  // As containerd: decompression is by magic; the media type only gates what we accept.
  (void)c;
  Compression magic_kind = Compression::kNone;
  ASSIGN_OR_RETURN(auto dec, OpenDecompressor(blob, &magic_kind, opts.max_expansion_ratio));
  ReadAhead stream(std::move(dec));
  CallbackState cb{&stream, {}};

  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a) return Err(Code::kInternal, "archive_read_new failed");
  archive_read_support_format_tar(a.get());  // ustar, pax, gnu
  if (archive_read_open(a.get(), &cb, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    if (!cb.error.ok()) return std::unexpected(cb.error);
    return Err(Code::kInvalidArgument,
               std::string("open tar: ") + (archive_error_string(a.get()) ?: "error"));
  }
  Extractor ex(rootfd.get(), opts);
  ex.synthetic = [&cb](const void* p) { return cb.Synthetic(p); };
  // A plain tar cannot hold more than the blob; a compressed one no more than the expansion
  // bound lets through (an entry claiming more fails before anything is written for it).
  if (magic_kind == Compression::kNone) ex.max_entry_size = blob.Size();
  if (magic_kind != Compression::kNone) {
    ex.max_entry_size = MaxDecompressedSize(blob.Size(), opts.max_expansion_ratio);
    ex.entry_bound_hint = " (compressed " + std::to_string(blob.Size()) +
                          " bytes; max_expansion_ratio " +
                          std::to_string(opts.max_expansion_ratio) + " in berthd's [diff] config)";
  }
  for (;;) {
    archive_entry* e = nullptr;
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      if (!cb.error.ok()) return std::unexpected(cb.error);
      std::string msg = archive_error_string(a.get()) ?: "error";
      // An empty (zero-byte) layer is a valid empty tar for our purposes.
      if (stream.size() == 0) break;
      Code code = msg.find("runcated") != std::string::npos ||
                          msg.find("nexpected EOF") != std::string::npos
                      ? Code::kDataLoss
                      : Code::kInvalidArgument;
      return Err(code, "read tar header: " + msg);
    }
    Status s = ex.Entry(a.get(), e);
    if (!cb.error.ok()) return std::unexpected(cb.error);
    // A full disk names the target's file system (issue 12 item 7).
    if (!s.ok()) return std::unexpected(WithFilesystem(std::move(s), root));
  }
  RETURN_IF_ERROR(ex.Finish());
  RETURN_IF_ERROR(stream.Drain());  // the digest covers everything after the end marker too
  return ApplyResult{stream.Digest(), stream.size()};
}

}  // namespace berth::diff
