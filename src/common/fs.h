// File-system helpers: one owning type per fd, directories with exact modes, atomic files.
#pragma once

#include <string>
#include <string_view>
#include <sys/types.h>

#include "common/env.h"
#include "common/status.h"

namespace berth {

// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Creates `path` and missing parents (parents 0711). The final directory gets `mode`; when it
// already exists it is chmod-ed to `mode` only if `tighten_existing` (the daemon's own root and
// state dirs, so a root left 0755 by an older install is fixed — CVE-2024-25621). Directories
// we do not own, such as /tmp holding a test socket, are never touched.
Status EnsureDir(const std::string& path, mode_t mode, bool tighten_existing = false);

// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync
// the directory. A crash leaves either the old file or the new one, never a mix. File
// operations go through `env` (tests inject faults there).
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode,
                       Env& env = Env::Default());
// "a/b/c" → "a/b", "/c" → "/", "c" → ".".
std::string Dirname(const std::string& path);
// The same without the fsyncs: a crash of the process (kill -9) still leaves the old file or
// the new one, a power loss may leave neither. For files in a state dir (/run: tmpfs on a
// normal host, meaningless after a reboot) — bundle files, where each fsync pair cost ~6 ms on a
// disk-backed state dir, several per container start.
Status WriteFileReplace(const std::string& path, std::string_view data, mode_t mode,
                        Env& env = Env::Default());

Result<std::string> ReadFile(const std::string& path, size_t max_size = 1 << 20);

// Reads until `n` bytes or end of file (retrying EINTR and short reads); returns the count.
Result<size_t> ReadFull(int fd, char* buf, size_t n);

}  // namespace berth
