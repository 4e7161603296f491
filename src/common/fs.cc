#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "common/mountinfo.h"
#include <memory>

namespace berth {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string Dirname(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

namespace {

Status WriteAll(Env& env, int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = env.Write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "write " + what);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

Status EnsureDir(const std::string& path, mode_t mode, bool tighten_existing) {
  if (path.empty()) return InvalidArgument("empty directory path");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return FailedPrecondition(path + " exists and is not a directory");
    if (tighten_existing && (st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) {
      return StatusFromErrno(errno, "chmod " + path);
    }
    return Status::Ok();
  }
  std::string parent = Dirname(path);
  if (parent != path && ::access(parent.c_str(), F_OK) != 0) {
    RETURN_IF_ERROR(EnsureDir(parent, 0711));
  }
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return StatusFromErrno(errno, "mkdir " + path);
  }
  // mkdir's mode is filtered by the umask; set it exactly.
  if (::chmod(path.c_str(), mode) != 0) return StatusFromErrno(errno, "chmod " + path);
  return Status::Ok();
}

namespace {

// Creates "<path>.tmp-XXXXXX" exclusively through `env` (mkostemp without the Env seam).
Result<UniqueFd> CreateTemp(Env& env, const std::string& path, std::string& name) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 0; attempt < 100; ++attempt) {
    name = path + ".tmp-";
    for (int i = 0; i < 6; ++i) name += kChars[rng() % (sizeof(kChars) - 1)];
    int fd = env.OpenAt(AT_FDCWD, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EEXIST) break;
  }
  return std::unexpected(StatusFromErrno(errno, "create temp file for " + path));
}

Status WriteFileRenamed(const std::string& path, std::string_view data, mode_t mode,
                        bool durable, Env& env) {
  std::string tmpl;
  ASSIGN_OR_RETURN(UniqueFd fd, CreateTemp(env, path, tmpl));
  auto fail = [&](Status s) {
    env.UnlinkAt(AT_FDCWD, tmpl.c_str(), 0);
    return s;
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(StatusFromErrno(errno, "chmod " + tmpl));
  if (Status s = WriteAll(env, fd.get(), data, tmpl); !s.ok()) return fail(s);
  if (durable && env.FSync(fd.get()) != 0) return fail(StatusFromErrno(errno, "fsync " + tmpl));
  fd.reset();
  if (env.RenameAt2(AT_FDCWD, tmpl.c_str(), AT_FDCWD, path.c_str(), 0) != 0) {
    return fail(StatusFromErrno(errno, "rename " + tmpl));
  }
  if (!durable) return Status::Ok();
  std::string dir = Dirname(path);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return StatusFromErrno(errno, "open " + dir);
  if (env.FSync(dfd.get()) != 0) return StatusFromErrno(errno, "fsync " + dir);
  return Status::Ok();
}

}  // namespace

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode, Env& env) {
  return WithFilesystem(WriteFileRenamed(path, data, mode, /*durable=*/true, env), path);
}

Status WriteFileReplace(const std::string& path, std::string_view data, mode_t mode, Env& env) {
  return WithFilesystem(WriteFileRenamed(path, data, mode, /*durable=*/false, env), path);
}

Result<std::string> ReadFile(const std::string& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "open " + path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(StatusFromErrno(errno, "read " + path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) {
      return std::unexpected(
          Status(Code::kResourceExhausted, path + " is larger than " + std::to_string(max_size)));
    }
  }
  return out;
}

Result<UniqueFd> OpenDirAt(int dirfd, const std::string& name) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "open " + name));
  return fd;
}

Result<UniqueFd> ReopenParent(int child, dev_t dev, ino_t ino) {
  UniqueFd fd(::openat(child, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "open .."));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return std::unexpected(StatusFromErrno(errno, "stat .."));
  if (st.st_dev != dev || st.st_ino != ino) {
    return std::unexpected(FailedPrecondition("directory moved while the tree was walked"));
  }
  return fd;
}

Result<std::vector<std::string>> ListDirAt(int dirfd) {
  // A fresh open of "." has its own offset: `dirfd` is left as it was.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, "open directory"));
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return std::unexpected(StatusFromErrno(err, "opendir"));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) return std::unexpected(StatusFromErrno(errno, "readdir"));
      break;
    }
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// One directory on a walk's stack.
struct WalkFrame {
  UniqueFd fd;  // closed while deeper than kWalkOpenDirs and a child is being walked
  dev_t dev = 0;
  ino_t ino = 0;
  std::string name;  // its name in the frame below (unused for the root)
  std::vector<std::string> names;
  size_t next = 0;
};

}  // namespace

Status WalkTreeAt(int root, const WalkVisitFn& visit, const WalkLeaveFn& leave,
                  size_t max_depth) {
  std::vector<WalkFrame> stack;
  {
    WalkFrame f;
    f.fd = UniqueFd(::fcntl(root, F_DUPFD_CLOEXEC, 0));
    if (!f.fd.valid()) return StatusFromErrno(errno, "dup");
    ASSIGN_OR_RETURN(f.names, ListDirAt(f.fd.get()));
    stack.push_back(std::move(f));
  }
  while (!stack.empty()) {
    WalkFrame& top = stack.back();
    if (top.next < top.names.size()) {
      const std::string& name = top.names[top.next++];
      struct stat st;
      if (::fstatat(top.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished meanwhile
        return StatusFromErrno(errno, "lstat " + name);
      }
      const size_t depth = stack.size();
      ASSIGN_OR_RETURN(bool descend, visit(WalkEntry{top.fd.get(), name, st, depth}));
      if (!descend || !S_ISDIR(st.st_mode)) continue;
      if (max_depth > 0 && depth >= max_depth) {
        return InvalidArgument("directory tree deeper than " + std::to_string(max_depth) +
                               " levels (at " + name + ")");
      }
      WalkFrame child;
      auto fd = OpenDirAt(top.fd.get(), name);
      if (!fd) {
        if (fd.error().code() == Code::kNotFound) continue;
        return fd.error();
      }
      child.fd = std::move(*fd);
      struct stat now;
      if (::fstat(child.fd.get(), &now) != 0) return StatusFromErrno(errno, "stat " + name);
      if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
        return FailedPrecondition(name + " changed while the tree was walked");
      }
      child.dev = now.st_dev;
      child.ino = now.st_ino;
      child.name = name;
      ASSIGN_OR_RETURN(child.names, ListDirAt(child.fd.get()));
      // Bound the fds: deep frames give theirs up until the walk comes back to them.
      if (stack.size() > kWalkOpenDirs) top.fd.reset();
      stack.push_back(std::move(child));
      continue;
    }
    // Done with `top`: back to its parent, reopening it if it was closed.
    if (stack.size() == 1) break;
    WalkFrame& parent = stack[stack.size() - 2];
    if (!parent.fd.valid()) {
      ASSIGN_OR_RETURN(parent.fd, ReopenParent(top.fd.get(), parent.dev, parent.ino));
    }
    std::string name = std::move(top.name);
    stack.pop_back();
    if (leave) RETURN_IF_ERROR(leave(stack.back().fd.get(), name));
  }
  return Status::Ok();
}

Status RemoveAllAt(int dirfd, const std::string& name, size_t max_depth) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return StatusFromErrno(errno, "stat " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    auto sub = OpenDirAt(dirfd, name);
    if (!sub) return sub.error().code() == Code::kNotFound ? Status::Ok() : sub.error();
    auto unlink = [&](const WalkEntry& e) -> Result<bool> {
      // `name` is level 1; the walk's depth-1 entries are level 2.
      if (max_depth > 0 && e.depth + 1 > max_depth) {
        return std::unexpected(InvalidArgument("directory tree deeper than " +
                                               std::to_string(max_depth) + " levels"));
      }
      if (S_ISDIR(e.st.st_mode)) return true;  // emptied first, removed on the way back
      if (::unlinkat(e.dirfd, e.name.c_str(), 0) != 0 && errno != ENOENT) {
        return std::unexpected(StatusFromErrno(errno, "unlink " + e.name));
      }
      return false;
    };
    auto rmdir = [](int parent, const std::string& n) -> Status {
      if (::unlinkat(parent, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return StatusFromErrno(errno, "rmdir " + n);
      }
      return Status::Ok();
    };
    RETURN_IF_ERROR(WalkTreeAt(sub->get(), unlink, rmdir).Wrap("remove " + name));
    sub->reset();
    return rmdir(dirfd, name);
  }
  if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return StatusFromErrno(errno, "unlink " + name);
  }
  return Status::Ok();
}

Status RemoveAll(const std::string& path) {
  std::string dir = Dirname(path);
  auto slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") {
    return InvalidArgument("refusing to remove " + path);
  }
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) {
    if (errno == ENOENT) return Status::Ok();
    return StatusFromErrno(errno, "open " + dir);
  }
  return RemoveAllAt(dfd.get(), base);
}

Result<size_t> ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(StatusFromErrno(errno, "read"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace berth
