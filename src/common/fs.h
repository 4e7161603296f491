// File-system helpers: one owning type per fd, directories with exact modes, atomic files.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

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

// ---------------------------------------------------------------------------------------------
// Tree walks. Every walk of a tree whose shape someone else decides (a layer, a container's
// snapshot) is iterative: an explicit stack, never recursion, so depth costs heap, not the
// calling thread's stack. A walk keeps at most kWalkOpenDirs directory fds open; deeper
// ancestors are closed on the way down and reopened through ".." on the way back up
// (ReopenParent), so a tree of any depth fits in any fd limit. Names are always resolved
// relative to a directory fd, so paths longer than PATH_MAX are no obstacle either.

inline constexpr size_t kWalkOpenDirs = 64;

// Opens directory `name` in `dirfd` for reading; never follows a symlink (ENOTDIR/ELOOP).
Result<UniqueFd> OpenDirAt(int dirfd, const std::string& name);

// Reopens the parent of directory fd `child` through ".." and checks that it is still the
// directory (dev, ino) the walk came from. FailedPrecondition when the tree was moved meanwhile
// (a running container renaming directories): the walk must not continue somewhere else.
Result<UniqueFd> ReopenParent(int child, dev_t dev, ino_t ino);

// The names in directory `dirfd` except "." and "..", sorted bytewise (Go's order). `dirfd`
// itself stays open and is not moved.
Result<std::vector<std::string>> ListDirAt(int dirfd);

// One entry met by WalkTreeAt: `name` in directory `dirfd`, its lstat, and its depth (1 for the
// entries of the walk's root).
struct WalkEntry {
  int dirfd;
  const std::string& name;
  const struct stat& st;
  size_t depth;
};
// Returns true to descend into a directory entry (ignored for other types).
using WalkVisitFn = std::function<Result<bool>(const WalkEntry&)>;
// Called after all entries of a directory the walk descended into were visited.
using WalkLeaveFn = std::function<Status(int dirfd, const std::string& name)>;

// Depth-first walk of everything below directory `root` (not `root` itself); never follows a
// symlink. `max_depth` > 0 bounds how deep it descends: deeper is InvalidArgument.
// An entry that vanishes while the walk runs is skipped. Errors: the callbacks', errno-mapped
// codes, FailedPrecondition (the tree was moved under the walk).
Status WalkTreeAt(int root, const WalkVisitFn& visit, const WalkLeaveFn& leave = {},
                  size_t max_depth = 0);

// rm -rf of `name` in `dirfd`, iteratively (any depth, bounded fds); never follows symlinks;
// OK when it does not exist. `max_depth` > 0: a tree deeper than that is InvalidArgument
// ("... deeper than N levels"), with what was above it possibly removed already.
Status RemoveAllAt(int dirfd, const std::string& name, size_t max_depth = 0);
// The same for a path (its last component is not followed either).
Status RemoveAll(const std::string& path);

// Reads until `n` bytes or end of file (retrying EINTR and short reads); returns the count.
Result<size_t> ReadFull(int fd, char* buf, size_t n);

}  // namespace berth
