#include "diff/changes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

namespace berth::diff {

Result<std::string> ReadLinkAt(int dirfd, const std::string& name) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return std::unexpected(StatusFromErrno(errno, "readlink " + name));
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

namespace {

constexpr size_t kCompareChunk = 32 * 1024;
constexpr char kCapability[] = "security.capability";

Status ChangedWhileReading(std::string_view name) {
  return FailedPrecondition(std::string(name) + " changed while reading");
}

Result<std::vector<std::string>> ReadNames(int dirfd, std::string_view what) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, "open " + std::string(what)));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return std::unexpected(StatusFromErrno(err, "opendir " + std::string(what)));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0)
        return std::unexpected(StatusFromErrno(errno, "readdir " + std::string(what)));
      break;
    }
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  std::sort(names.begin(), names.end());  // bytewise, as Go sorts names
  return names;
}

Result<struct stat> Lstat(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return std::unexpected(StatusFromErrno(errno, "lstat " + name));
  }
  return st;
}

Result<UniqueFd> OpenDir(int dirfd, const std::string& name) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR || errno == ELOOP) return std::unexpected(ChangedWhileReading(name));
    return std::unexpected(StatusFromErrno(errno, "open " + name));
  }
  return UniqueFd(fd);
}

// Opens a regular file that lstat showed as `st`; refuses anything else (swapped meanwhile).
Result<UniqueFd> OpenRegular(int dirfd, const std::string& name, const struct stat& st) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) return std::unexpected(ChangedWhileReading(name));
    return std::unexpected(StatusFromErrno(errno, "open " + name));
  }
  UniqueFd f(fd);
  struct stat now;
  if (::fstat(fd, &now) != 0) return std::unexpected(StatusFromErrno(errno, "fstat " + name));
  if (!S_ISREG(now.st_mode) || now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
    return std::unexpected(ChangedWhileReading(name));
  }
  return f;
}

Result<bool> SameContent(int lfd, const std::string& lname, const struct stat& lst, int ufd,
                         const std::string& uname, const struct stat& ust) {
  ASSIGN_OR_RETURN(UniqueFd a, OpenRegular(lfd, lname, lst));
  ASSIGN_OR_RETURN(UniqueFd b, OpenRegular(ufd, uname, ust));
  std::vector<char> b1(kCompareChunk), b2(kCompareChunk);
  for (;;) {
    ASSIGN_OR_RETURN(size_t n1, ReadFull(a.get(), b1.data(), b1.size()));
    ASSIGN_OR_RETURN(size_t n2, ReadFull(b.get(), b2.data(), b2.size()));
    if (n1 != n2 || std::memcmp(b1.data(), b2.data(), n1) != 0) return false;
    if (n1 < kCompareChunk) return true;
  }
}

Result<bool> SameFile(int lfd, const std::string& lname, const struct stat& l, int ufd,
                      const std::string& uname, const struct stat& u) {
  if (l.st_dev == u.st_dev && l.st_ino == u.st_ino) return true;
  if (l.st_mode != u.st_mode || l.st_uid != u.st_uid || l.st_gid != u.st_gid ||
      l.st_rdev != u.st_rdev) {
    return false;
  }
  ASSIGN_OR_RETURN(std::string lcap, Capability(lfd, lname));
  ASSIGN_OR_RETURN(std::string ucap, Capability(ufd, uname));
  if (lcap != ucap) return false;
  if (S_ISDIR(l.st_mode)) return true;
  if (l.st_size != u.st_size || l.st_mtim.tv_sec != u.st_mtim.tv_sec) return false;
  if (l.st_mtim.tv_nsec == 0 && u.st_mtim.tv_nsec == 0) {
    // Either side may have passed through a tar (whole seconds): decide by content.
    if (S_ISLNK(l.st_mode)) {
      ASSIGN_OR_RETURN(std::string a, ReadLinkAt(lfd, lname));
      ASSIGN_OR_RETURN(std::string b, ReadLinkAt(ufd, uname));
      return a == b;
    }
    if (l.st_size == 0) return true;
    return SameContent(lfd, lname, l, ufd, uname, u);
  }
  return l.st_mtim.tv_nsec == u.st_mtim.tv_nsec;
}

// The double walk, iteratively: an explicit stack of frames, one per directory being walked,
// never recursion (a container decides how deep its tree is; ~1 KB of stack per level crashed
// the daemon at ~11,000 levels). Fds are bounded as in common/fs.h: deep frames close theirs
// while a child is walked and get them back through "..", checked by device and inode.
class Walker {
 public:
  Walker(const ChangeFn& fn, const CancelFn& cancelled) : fn_(fn), cancelled_(cancelled) {}

  Status Run(UniqueFd lower, UniqueFd upper) {
    Frame root;
    root.both = true;
    root.l = std::move(lower);
    root.u = std::move(upper);
    ASSIGN_OR_RETURN(root.lnames, ReadNames(root.l.get(), "/"));
    ASSIGN_OR_RETURN(root.unames, ReadNames(root.u.get(), "/"));
    stack_.push_back(std::move(root));
    while (!stack_.empty()) {
      // Checked per entry, not per change: a big unchanged tree reports nothing for a while.
      if (cancelled_ && cancelled_()) return Status(Code::kCanceled, "diff canceled");
      Frame& f = stack_.back();
      const bool more = f.both ? f.i < f.lnames.size() || f.j < f.unames.size()
                               : f.j < f.unames.size();
      if (!more) {
        RETURN_IF_ERROR(Pop());
        continue;
      }
      if (f.both) {
        RETURN_IF_ERROR(StepBoth(f));
      } else {
        RETURN_IF_ERROR(Added(f.u.get(), f.unames[f.j++]));
      }
    }
    return Status::Ok();
  }

 private:
  struct Frame {
    bool both = false;  // both trees have this directory; else it is new in upper
    UniqueFd l, u;      // l unused when !both
    dev_t ldev = 0, udev = 0;
    ino_t lino = 0, uino = 0;
    std::vector<std::string> lnames, unames;
    size_t i = 0, j = 0;  // next in lnames, unames
    size_t path_len = 0;  // path_ before this directory's name was appended
  };

  // One entry of a directory present on both sides. May push a frame (then `f` is stale).
  Status StepBoth(Frame& f) {
    int c = f.i == f.lnames.size()   ? 1
            : f.j == f.unames.size() ? -1
                                     : f.lnames[f.i].compare(f.unames[f.j]);
    if (c < 0) return Emit(ChangeKind::kDelete, nullptr, -1, f.lnames[f.i++]);
    if (c > 0) return Added(f.u.get(), f.unames[f.j++]);
    const std::string name = f.unames[f.j];
    ++f.i;
    ++f.j;
    const int lfd = f.l.get(), ufd = f.u.get();
    ASSIGN_OR_RETURN(struct stat lst, Lstat(lfd, name));
    ASSIGN_OR_RETURN(struct stat ust, Lstat(ufd, name));
    ASSIGN_OR_RETURN(bool same, SameFile(lfd, name, lst, ufd, name, ust));
    if (S_ISDIR(lst.st_mode) && S_ISDIR(ust.st_mode)) {
      if (!same) RETURN_IF_ERROR(Emit(ChangeKind::kModify, &ust, ufd, name));
      return PushDir(/*both=*/true, name);
    }
    if (same) {
      if (!S_ISDIR(ust.st_mode) && ust.st_nlink > 1) {
        return Emit(ChangeKind::kUnmodified, &ust, ufd, name);
      }
      return Status::Ok();
    }
    // A directory that became something else takes its children with it.
    RETURN_IF_ERROR(Emit(ChangeKind::kModify, &ust, ufd, name));
    if (S_ISDIR(ust.st_mode)) return PushDir(/*both=*/false, name);
    return Status::Ok();
  }

  // Appends "/name" to path_; a path longer than PATH_MAX is an error, as for containerd
  // (its lstat fails with ENAMETOOLONG): no layer could name it, and it bounds the depth.
  Result<size_t> Push(const std::string& name) {
    size_t len = path_.size();
    if (len + 1 + name.size() >= PATH_MAX) {
      return std::unexpected(InvalidArgument(
          "lstat " + path_.substr(0, 64) + "...: file name too long (a path in the snapshot "
          "is longer than " + std::to_string(PATH_MAX - 1) + " bytes)"));
    }
    path_ += '/';
    path_ += name;
    return len;
  }

  // Descends into `name` of the top frame: both sides, or upper only (an added tree).
  Status PushDir(bool both, const std::string& name) {
    Frame& parent = stack_.back();
    Frame child;
    child.both = both;
    ASSIGN_OR_RETURN(child.path_len, Push(name));
    ASSIGN_OR_RETURN(child.u, OpenDir(parent.u.get(), name));
    RETURN_IF_ERROR(Identify(child.u.get(), name, &child.udev, &child.uino));
    if (both) {
      ASSIGN_OR_RETURN(child.l, OpenDir(parent.l.get(), name));
      RETURN_IF_ERROR(Identify(child.l.get(), name, &child.ldev, &child.lino));
      ASSIGN_OR_RETURN(child.lnames, ReadNames(child.l.get(), path_));
    }
    ASSIGN_OR_RETURN(child.unames, ReadNames(child.u.get(), path_));
    if (stack_.size() > kWalkOpenDirs) {
      // The parent's upper fd comes back through the child's ".."; its lower one only when
      // the child has a lower side to come back through.
      parent.u.reset();
      if (both) parent.l.reset();
    }
    stack_.push_back(std::move(child));
    return Status::Ok();
  }

  Status Pop() {
    Frame& top = stack_.back();
    if (stack_.size() > 1) {
      Frame& parent = stack_[stack_.size() - 2];
      if (!parent.u.valid()) {
        ASSIGN_OR_RETURN(parent.u, ReopenParent(top.u.get(), parent.udev, parent.uino));
      }
      if (parent.both && !parent.l.valid()) {
        ASSIGN_OR_RETURN(parent.l, ReopenParent(top.l.get(), parent.ldev, parent.lino));
      }
    }
    path_.resize(top.path_len);
    stack_.pop_back();
    return Status::Ok();
  }

  static Status Identify(int fd, const std::string& name, dev_t* dev, ino_t* ino) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return StatusFromErrno(errno, "fstat " + name);
    *dev = st.st_dev;
    *ino = st.st_ino;
    return Status::Ok();
  }

  Status Added(int ufd, const std::string& name) {
    ASSIGN_OR_RETURN(struct stat st, Lstat(ufd, name));
    RETURN_IF_ERROR(Emit(ChangeKind::kAdd, &st, ufd, name));
    if (S_ISDIR(st.st_mode)) return PushDir(/*both=*/false, name);
    return Status::Ok();
  }

  Status Emit(ChangeKind kind, const struct stat* st, int dirfd, const std::string& name) {
    if (cancelled_ && cancelled_()) return Status(Code::kCanceled, "diff canceled");
    ASSIGN_OR_RETURN(size_t len, Push(name));
    Change c{.kind = kind, .path = path_, .st = st, .dirfd = dirfd, .name = name};
    Status s = fn_(c);
    path_.resize(len);
    return s;
  }

  const ChangeFn& fn_;
  const CancelFn& cancelled_;
  std::vector<Frame> stack_;
  std::string path_;  // the directory being walked: "" for the root, else "/a/b"
};

Result<UniqueFd> OpenRoot(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, "open " + path));
  return UniqueFd(fd);
}

}  // namespace

std::string_view ChangeKindName(ChangeKind kind) {
  switch (kind) {
    case ChangeKind::kUnmodified:
      return "unmodified";
    case ChangeKind::kAdd:
      return "add";
    case ChangeKind::kModify:
      return "modify";
    case ChangeKind::kDelete:
      return "delete";
  }
  return "";
}

Result<std::string> Capability(int dirfd, std::string_view name) {
  // No *xattrat call exists: go through the directory fd's /proc link, which pins the
  // directory; lgetxattr does not follow the final component.
  std::string path = "/proc/self/fd/" + std::to_string(dirfd) + "/" + std::string(name);
  std::string buf(64, '\0');
  for (;;) {
    ssize_t n = ::lgetxattr(path.c_str(), kCapability, buf.data(), buf.size());
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (errno == ENODATA || errno == ENOTSUP) return std::string();
    if (errno != ERANGE || buf.size() >= 65536) {
      return std::unexpected(
          StatusFromErrno(errno, "get " + std::string(kCapability) + " of " + std::string(name)));
    }
    buf.resize(buf.size() * 4);
  }
}

Result<UniqueFd> OpenDirBeneath(int root_fd, std::string_view rel) {
  int fd = ::openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, "open root"));
  UniqueFd cur(fd);
  while (!rel.empty()) {
    size_t slash = rel.find('/');
    std::string comp(rel.substr(0, slash));
    rel = slash == std::string_view::npos ? std::string_view() : rel.substr(slash + 1);
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return std::unexpected(InvalidArgument("path leaves the tree"));
    int next = ::openat(cur.get(), comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (errno == ENOTDIR || errno == ELOOP) return std::unexpected(ChangedWhileReading(comp));
      return std::unexpected(StatusFromErrno(errno, "open " + comp));
    }
    cur = UniqueFd(next);
  }
  return cur;
}

Status Changes(const std::string& lower, const std::string& upper, const ChangeFn& fn,
               const CancelFn& cancelled) {
  ASSIGN_OR_RETURN(UniqueFd l, OpenRoot(lower));
  ASSIGN_OR_RETURN(UniqueFd u, OpenRoot(upper));
  Walker w(fn, cancelled);
  return w.Run(std::move(l), std::move(u));
}

}  // namespace berth::diff
