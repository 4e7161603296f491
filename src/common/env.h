// Env: the seam between berthd's durable paths and the operating system.
//
// LevelDB routes every file operation through include/leveldb/env.h, Envoy every syscall
// through OsSysCalls; both do it so tests can make the OS misbehave. Ours is deliberately
// smaller: only the calls whose failure decides whether data survives — creating, writing,
// truncating and syncing files, and the directory operations that publish them (rename, link,
// unlink, mkdir). Reads, stats and listing stay direct syscalls: a failing read cannot leave
// partial state behind.
//
// The methods keep the syscalls' contract exactly (return value, errno on failure, EINTR
// included) so converting a call site is mechanical: `::fsync(fd)` becomes `env.FSync(fd)`.
// That is Envoy's choice (OsSysCallsImpl returns the raw rc and errno) rather than LevelDB's
// Status-returning WritableFile: our callers already turn errno into a Status with
// StatusFromErrno, naming the path.
//
// Who uses it (each takes an Env&, defaulting to Env::Default(), so callers that do not care
// do not change):
//   common/fs       WriteFileAtomic, WriteFileReplace
//   content/local   ingest create/write/truncate/sync, commit (fsync, renameat2/linkat),
//                   ingest removal
//   snapshots       overlay/native Create (mkdir, rename into place) and Remove
// tests/common/fault_injection_env.h wraps the default Env to inject ENOSPC, EIO and crashes.
//
// Thread-safe: every method may be called concurrently (the default one is stateless).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace berth {

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide Env that performs the real syscalls. Never destroyed.
  static Env& Default();

  // openat(2). `mode` is used with O_CREAT / O_TMPFILE only. Returns the fd or -1 (errno).
  virtual int OpenAt(int dirfd, const char* path, int flags, mode_t mode) = 0;
  // write(2) / pwrite(2): may write fewer bytes than asked (callers loop). -1 (errno).
  virtual ssize_t Write(int fd, const void* buf, size_t n) = 0;
  virtual ssize_t PWrite(int fd, const void* buf, size_t n, off_t offset) = 0;
  // ftruncate(2). 0 or -1 (errno).
  virtual int FTruncate(int fd, off_t size) = 0;
  // fsync(2) / fdatasync(2), on files and on directories (to make entries durable).
  virtual int FSync(int fd) = 0;
  virtual int FDataSync(int fd) = 0;
  // renameat2(2) (`flags` 0 = renameat; RENAME_NOREPLACE, RENAME_EXCHANGE). 0 or -1 (errno).
  virtual int RenameAt2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                        unsigned flags) = 0;
  // linkat(2), unlinkat(2) (AT_REMOVEDIR for directories), mkdirat(2). 0 or -1 (errno).
  virtual int LinkAt(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                     int flags) = 0;
  virtual int UnlinkAt(int dirfd, const char* path, int flags) = 0;
  virtual int MkdirAt(int dirfd, const char* path, mode_t mode) = 0;
};

// Forwards every call to `target` (not owned). Base for test Envs that change a few calls
// (LevelDB's EnvWrapper).
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env& target) : target_(target) {}
  Env& target() const { return target_; }

  int OpenAt(int dirfd, const char* path, int flags, mode_t mode) override {
    return target_.OpenAt(dirfd, path, flags, mode);
  }
  ssize_t Write(int fd, const void* buf, size_t n) override { return target_.Write(fd, buf, n); }
  ssize_t PWrite(int fd, const void* buf, size_t n, off_t offset) override {
    return target_.PWrite(fd, buf, n, offset);
  }
  int FTruncate(int fd, off_t size) override { return target_.FTruncate(fd, size); }
  int FSync(int fd) override { return target_.FSync(fd); }
  int FDataSync(int fd) override { return target_.FDataSync(fd); }
  int RenameAt2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                unsigned flags) override {
    return target_.RenameAt2(olddirfd, oldpath, newdirfd, newpath, flags);
  }
  int LinkAt(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
             int flags) override {
    return target_.LinkAt(olddirfd, oldpath, newdirfd, newpath, flags);
  }
  int UnlinkAt(int dirfd, const char* path, int flags) override {
    return target_.UnlinkAt(dirfd, path, flags);
  }
  int MkdirAt(int dirfd, const char* path, mode_t mode) override {
    return target_.MkdirAt(dirfd, path, mode);
  }

 private:
  Env& target_;
};

}  // namespace berth
