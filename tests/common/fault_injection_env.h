// FaultInjectionEnv: an Env (common/env.h) that makes the file system misbehave on purpose, for
// crash and failure tests of the durable paths (LevelDB's db/fault_injection_test.cc idea).
//
// Three kinds of faults:
//   * ENOSPC after N bytes: writes succeed until N bytes went through Write/PWrite (the write
//     that crosses the limit is short), then every write — and every file or directory
//     creation — fails with ENOSPC until the limit is lifted.
//   * the k-th call of one operation (fsync, rename, mkdir, ...) fails with a chosen errno
//     without doing anything (k counts from the last ResetCounters()).
//   * a crash: after the k-th mutating call the "process" is dead (every later call fails with
//     EIO and changes nothing); DropUnsyncedData() then makes the disk look as a power cut
//     could leave it: file bytes written after the file's last fsync are dropped (truncated
//     to the size at that fsync) and directory entries created, renamed, linked or removed
//     since their directory's last fsync are undone (newest first). A rename counts as durable
//     once its destination directory was fsynced. This is the pessimistic POSIX model (ext4's
//     journal is usually kinder); code that survives it survives any file system.
//
// Operations that do not go through the Env (plain syscalls in the code under test) are not
// seen: their effects count as durable immediately.
//
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/env.h"

namespace berth::fault {

class FaultInjectionEnv final : public EnvWrapper {
 public:
  enum class Op { kCreate, kWrite, kTruncate, kSync, kRename, kLink, kUnlink, kMkdir, kCount };
  static constexpr int kOps = static_cast<int>(Op::kCount);
  static const char* OpName(Op op);

  FaultInjectionEnv();
  ~FaultInjectionEnv() override;

  // --- faults
  // Writes fail with ENOSPC once `bytes` more bytes were written; -1 lifts the limit.
  void SetWriteLimit(int64_t bytes);
  // The k-th call (1-based, from now on) of `op` fails with `err`; k <= 0 clears it.
  void FailAt(Op op, int k, int err = EIO);
  // After `k` more mutating calls (any op), the process is dead: later calls fail with EIO.
  void CrashAfter(int k);
  // Dead from now on.
  void Crash();
  // Makes the disk look as after a power cut (see the header comment) and revives the Env:
  // counters, faults and tracking start over.
  void DropUnsyncedData();
  // Clears faults, counters and tracking without touching the disk.
  void Reset();

  // --- what happened
  int Calls(Op op) const;     // calls of `op` since the last reset (failed ones included)
  int TotalCalls() const;     // mutating calls of any op
  int Injected() const;       // faults injected since the last reset
  bool crashed() const;

  // --- Env
  int OpenAt(int dirfd, const char* path, int flags, mode_t mode) override;
  ssize_t Write(int fd, const void* buf, size_t n) override;
  ssize_t PWrite(int fd, const void* buf, size_t n, off_t offset) override;
  int FTruncate(int fd, off_t size) override;
  int FSync(int fd) override;
  int FDataSync(int fd) override;
  int RenameAt2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                unsigned flags) override;
  int LinkAt(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
             int flags) override;
  int UnlinkAt(int dirfd, const char* path, int flags) override;
  int MkdirAt(int dirfd, const char* path, mode_t mode) override;

 private:
  using InodeKey = std::pair<dev_t, ino_t>;
  // A file written through the Env: a private dup of its fd (so it can be truncated wherever
  // it was renamed to) and its size at the last fsync.
  struct File {
    int fd = -1;
    off_t synced_size = 0;
    bool dirty = false;
  };
  // One directory change not yet made durable by an fsync of `dir`.
  struct DirOp {
    enum Kind { kCreated, kRenamed, kRemovedFile } kind;
    InodeKey dir;
    std::string path;   // created/renamed-to/removed path (absolute)
    std::string from;   // kRenamed: the old path
    std::string stash;  // kRenamed over a file / kRemovedFile: where the old file is kept
  };

  // Counts a call of `op`; false (errno set) when it must fail.
  bool Admit(Op op);
  void TrackWrite(int fd);
  std::string AbsPath(int dirfd, const char* path) const;
  std::string Stash(const std::string& path);
  void ClearLocked();

  mutable std::mutex mu_;
  std::array<int, kOps> calls_{};
  std::array<std::pair<int, int>, kOps> fail_at_{};  // (k, errno)
  int total_ = 0;
  int injected_ = 0;
  int crash_after_ = -1;
  bool crashed_ = false;
  int64_t write_limit_ = -1;
  std::map<InodeKey, File> files_;
  std::vector<DirOp> dir_ops_;
  std::string stash_dir_;
  int stash_seq_ = 0;
};

}  // namespace berth::fault
