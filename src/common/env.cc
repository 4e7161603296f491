#include "common/env.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

namespace berth {
namespace {

class PosixEnv final : public Env {
 public:
  int OpenAt(int dirfd, const char* path, int flags, mode_t mode) override {
    return ::openat(dirfd, path, flags, mode);
  }
  ssize_t Write(int fd, const void* buf, size_t n) override { return ::write(fd, buf, n); }
  ssize_t PWrite(int fd, const void* buf, size_t n, off_t offset) override {
    return ::pwrite(fd, buf, n, offset);
  }
  int FTruncate(int fd, off_t size) override { return ::ftruncate(fd, size); }
  int FSync(int fd) override { return ::fsync(fd); }
  int FDataSync(int fd) override { return ::fdatasync(fd); }
  int RenameAt2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                unsigned flags) override {
    if (flags == 0) return ::renameat(olddirfd, oldpath, newdirfd, newpath);
    return ::renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
  }
  int LinkAt(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
             int flags) override {
    return ::linkat(olddirfd, oldpath, newdirfd, newpath, flags);
  }
  int UnlinkAt(int dirfd, const char* path, int flags) override {
    return ::unlinkat(dirfd, path, flags);
  }
  int MkdirAt(int dirfd, const char* path, mode_t mode) override {
    return ::mkdirat(dirfd, path, mode);
  }
};

}  // namespace

Env& Env::Default() {
  // Leaked on purpose: usable from static destructors and detached threads.
  static Env* env = new PosixEnv();
  return *env;
}

}  // namespace berth
