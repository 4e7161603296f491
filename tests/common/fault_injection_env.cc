#include "fault_injection_env.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace berth::fault {
namespace {

std::string Parent(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos || pos == 0) return "/";
  return path.substr(0, pos);
}

bool KeyOf(const std::string& path, std::pair<dev_t, ino_t>* key) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return false;
  *key = {st.st_dev, st.st_ino};
  return true;
}

}  // namespace

const char* FaultInjectionEnv::OpName(Op op) {
  switch (op) {
    case Op::kCreate: return "create";
    case Op::kWrite: return "write";
    case Op::kTruncate: return "truncate";
    case Op::kSync: return "fsync";
    case Op::kRename: return "rename";
    case Op::kLink: return "link";
    case Op::kUnlink: return "unlink";
    case Op::kMkdir: return "mkdir";
    case Op::kCount: break;
  }
  return "?";
}

FaultInjectionEnv::FaultInjectionEnv() : EnvWrapper(Env::Default()) {
  char tmpl[] = "/tmp/berth-fault-stash-XXXXXX";
  if (::mkdtemp(tmpl) != nullptr) stash_dir_ = tmpl;
}

FaultInjectionEnv::~FaultInjectionEnv() {
  std::lock_guard lock(mu_);
  ClearLocked();
  if (!stash_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(stash_dir_, ec);
  }
}

void FaultInjectionEnv::SetWriteLimit(int64_t bytes) {
  std::lock_guard lock(mu_);
  write_limit_ = bytes;
}

void FaultInjectionEnv::FailAt(Op op, int k, int err) {
  std::lock_guard lock(mu_);
  fail_at_[static_cast<int>(op)] = {k > 0 ? calls_[static_cast<int>(op)] + k : 0, err};
}

void FaultInjectionEnv::CrashAfter(int k) {
  std::lock_guard lock(mu_);
  crash_after_ = total_ + k;
}

void FaultInjectionEnv::Crash() {
  std::lock_guard lock(mu_);
  crashed_ = true;
}

int FaultInjectionEnv::Calls(Op op) const {
  std::lock_guard lock(mu_);
  return calls_[static_cast<int>(op)];
}

int FaultInjectionEnv::TotalCalls() const {
  std::lock_guard lock(mu_);
  return total_;
}

int FaultInjectionEnv::Injected() const {
  std::lock_guard lock(mu_);
  return injected_;
}

bool FaultInjectionEnv::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

void FaultInjectionEnv::ClearLocked() {
  for (auto& [key, f] : files_) ::close(f.fd);
  files_.clear();
  dir_ops_.clear();
  calls_ = {};
  fail_at_ = {};
  total_ = injected_ = 0;
  crash_after_ = -1;
  crashed_ = false;
  write_limit_ = -1;
}

void FaultInjectionEnv::Reset() {
  std::lock_guard lock(mu_);
  ClearLocked();
}

void FaultInjectionEnv::DropUnsyncedData() {
  std::lock_guard lock(mu_);
  for (auto& [key, f] : files_) {
    if (!f.dirty) continue;
    struct stat st;
    // A shrink since the last fsync is kept (we do not have the old bytes); growth is dropped.
    if (::fstat(f.fd, &st) == 0 && st.st_size > f.synced_size) {
      (void)::ftruncate(f.fd, f.synced_size);
    }
  }
  std::error_code ec;
  for (auto it = dir_ops_.rbegin(); it != dir_ops_.rend(); ++it) {
    switch (it->kind) {
      case DirOp::kCreated:
        std::filesystem::remove_all(it->path, ec);
        break;
      case DirOp::kRenamed:
        if (::rename(it->path.c_str(), it->from.c_str()) != 0 && errno == ENOENT) {
          // The old name's directory is gone for good (removed outside the Env): the
          // undurable new name vanishes and the file with it.
          std::filesystem::remove_all(it->path, ec);
        }
        if (!it->stash.empty()) (void)::rename(it->stash.c_str(), it->path.c_str());
        break;
      case DirOp::kRemovedFile:
        if (!it->stash.empty()) (void)::rename(it->stash.c_str(), it->path.c_str());
        break;
    }
  }
  ClearLocked();
}

bool FaultInjectionEnv::Admit(Op op) {
  if (crashed_) {
    errno = EIO;
    return false;
  }
  int i = static_cast<int>(op);
  ++calls_[i];
  ++total_;
  if (crash_after_ >= 0 && total_ > crash_after_) {
    crashed_ = true;
    errno = EIO;
    return false;
  }
  if (fail_at_[i].first > 0 && calls_[i] == fail_at_[i].first) {
    ++injected_;
    errno = fail_at_[i].second;
    return false;
  }
  return true;
}

std::string FaultInjectionEnv::AbsPath(int dirfd, const char* path) const {
  if (path[0] == '/') return path;
  std::string base;
  if (dirfd == AT_FDCWD) {
    char buf[PATH_MAX];
    if (::getcwd(buf, sizeof buf) != nullptr) base = buf;
  } else {
    char buf[PATH_MAX];
    std::string link = "/proc/self/fd/" + std::to_string(dirfd);
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    if (n > 0) base.assign(buf, static_cast<size_t>(n));
  }
  return base + "/" + path;
}

std::string FaultInjectionEnv::Stash(const std::string& path) {
  if (stash_dir_.empty()) return "";
  std::string stash = stash_dir_ + "/" + std::to_string(++stash_seq_);
  if (::link(path.c_str(), stash.c_str()) != 0) return "";  // EXDEV: cannot be undone
  return stash;
}

void FaultInjectionEnv::TrackWrite(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  auto [it, inserted] = files_.try_emplace({st.st_dev, st.st_ino});
  if (inserted) {
    it->second.fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    it->second.synced_size = st.st_size;
  }
  it->second.dirty = true;
}

int FaultInjectionEnv::OpenAt(int dirfd, const char* path, int flags, mode_t mode) {
  std::lock_guard lock(mu_);
  if (!(flags & O_CREAT)) {
    if (crashed_) {
      errno = EIO;
      return -1;
    }
    return target().OpenAt(dirfd, path, flags, mode);
  }
  if (!Admit(Op::kCreate)) return -1;
  if (write_limit_ == 0) {
    errno = ENOSPC;
    return -1;
  }
  std::string abs = AbsPath(dirfd, path);
  struct stat st;
  bool existed = ::lstat(abs.c_str(), &st) == 0;
  int fd = target().OpenAt(dirfd, path, flags, mode);
  InodeKey dir;
  if (fd >= 0 && !existed && KeyOf(Parent(abs), &dir)) {
    dir_ops_.push_back({DirOp::kCreated, dir, abs, "", ""});
  }
  return fd;
}

ssize_t FaultInjectionEnv::Write(int fd, const void* buf, size_t n) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kWrite)) return -1;
  if (write_limit_ == 0 && n > 0) {
    errno = ENOSPC;
    return -1;
  }
  if (write_limit_ > 0) n = std::min(n, static_cast<size_t>(write_limit_));
  TrackWrite(fd);
  ssize_t r = target().Write(fd, buf, n);
  if (r > 0 && write_limit_ > 0) write_limit_ -= r;
  return r;
}

ssize_t FaultInjectionEnv::PWrite(int fd, const void* buf, size_t n, off_t offset) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kWrite)) return -1;
  if (write_limit_ == 0 && n > 0) {
    errno = ENOSPC;
    return -1;
  }
  if (write_limit_ > 0) n = std::min(n, static_cast<size_t>(write_limit_));
  TrackWrite(fd);
  ssize_t r = target().PWrite(fd, buf, n, offset);
  if (r > 0 && write_limit_ > 0) write_limit_ -= r;
  return r;
}

int FaultInjectionEnv::FTruncate(int fd, off_t size) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kTruncate)) return -1;
  TrackWrite(fd);
  return target().FTruncate(fd, size);
}

int FaultInjectionEnv::FSync(int fd) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kSync)) return -1;
  int rc = target().FSync(fd);
  struct stat st;
  if (rc != 0 || ::fstat(fd, &st) != 0) return rc;
  InodeKey key{st.st_dev, st.st_ino};
  if (S_ISDIR(st.st_mode)) {
    std::erase_if(dir_ops_, [&](const DirOp& op) { return op.dir == key; });
  } else if (auto it = files_.find(key); it != files_.end()) {
    it->second.synced_size = st.st_size;
    it->second.dirty = false;
  }
  return rc;
}

int FaultInjectionEnv::FDataSync(int fd) { return FSync(fd); }

int FaultInjectionEnv::RenameAt2(int olddirfd, const char* oldpath, int newdirfd,
                                 const char* newpath, unsigned flags) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kRename)) return -1;
  std::string from = AbsPath(olddirfd, oldpath), to = AbsPath(newdirfd, newpath);
  struct stat st;
  std::string stash;
  if (::lstat(to.c_str(), &st) == 0 && S_ISREG(st.st_mode)) stash = Stash(to);
  int rc = target().RenameAt2(olddirfd, oldpath, newdirfd, newpath, flags);
  InodeKey dir;
  if (rc != 0) {
    int err = errno;
    if (!stash.empty()) ::unlink(stash.c_str());
    errno = err;
  } else if (KeyOf(Parent(to), &dir)) {
    dir_ops_.push_back({DirOp::kRenamed, dir, to, from, stash});
  }
  return rc;
}

int FaultInjectionEnv::LinkAt(int olddirfd, const char* oldpath, int newdirfd,
                              const char* newpath, int flags) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kLink)) return -1;
  int rc = target().LinkAt(olddirfd, oldpath, newdirfd, newpath, flags);
  std::string to = AbsPath(newdirfd, newpath);
  InodeKey dir;
  if (rc == 0 && KeyOf(Parent(to), &dir)) dir_ops_.push_back({DirOp::kCreated, dir, to, "", ""});
  return rc;
}

int FaultInjectionEnv::UnlinkAt(int dirfd, const char* path, int flags) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kUnlink)) return -1;
  std::string abs = AbsPath(dirfd, path);
  struct stat st;
  std::string stash;
  if (!(flags & AT_REMOVEDIR) && ::lstat(abs.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    stash = Stash(abs);
  }
  int rc = target().UnlinkAt(dirfd, path, flags);
  InodeKey dir;
  if (rc != 0) {
    int err = errno;
    if (!stash.empty()) ::unlink(stash.c_str());
    errno = err;
  } else if (!stash.empty() && KeyOf(Parent(abs), &dir)) {
    dir_ops_.push_back({DirOp::kRemovedFile, dir, abs, "", stash});
  }
  return rc;
}

int FaultInjectionEnv::MkdirAt(int dirfd, const char* path, mode_t mode) {
  std::lock_guard lock(mu_);
  if (!Admit(Op::kMkdir)) return -1;
  if (write_limit_ == 0) {
    errno = ENOSPC;
    return -1;
  }
  int rc = target().MkdirAt(dirfd, path, mode);
  std::string abs = AbsPath(dirfd, path);
  InodeKey dir;
  if (rc == 0 && KeyOf(Parent(abs), &dir)) dir_ops_.push_back({DirOp::kCreated, dir, abs, "", ""});
  return rc;
}

}  // namespace berth::fault
