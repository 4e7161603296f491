// Mounts as data (containerd.types.Mount without a target) and the one owner of a temporary
// mount point, shared by everything that has to look inside a snapshot (Diff.Apply,
// Diff.Diff).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace berth {

// One mount, as a snapshotter returns it and a client sends it: the caller performs it.
struct Mount {
  std::string type;
  std::string source;
  std::vector<std::string> options;
  bool operator==(const Mount&) const = default;
};

bool HasMountOption(const Mount& m, std::string_view option);
// The value of the first `key=value` option, or "".
std::string MountOptionValue(const Mount& m, std::string_view key);

// The read-only form of `mounts`, as containerd makes it before reading a snapshot
// (mount.readonlyMounts): overlay loses upperdir/workdir and the upperdir becomes the top
// lowerdir (a lowerdir-only overlay is read-only and still honours whiteouts); every other
// mount loses rw/ro and gets "ro".
std::vector<Mount> ReadonlyMounts(std::vector<Mount> mounts);

// Performs one mount on `target`. Options: the usual flag words (ro, rw, bind, rbind, nosuid,
// nodev, noexec, ...) become mount flags, propagation words a second mount(2) call, the rest
// data. A bind is made first and remounted for ro/nosuid/nodev/noexec (the kernel ignores
// them on the bind itself); type "bind" mounts as "none". Overlay data longer than a page
// gets its lowerdirs relative to their common parent (as containerd does). On failure nothing
// stays mounted. Errors: errno-mapped, naming the mount.
Status MountOn(const Mount& m, const std::string& target);

// Mounts `mounts` on `target` in order (a later one stacks on an earlier one); on failure the
// ones made so far are undone.
Status MountAll(std::span<const Mount> mounts, const std::string& target);

// Unmounts `target` until it is no mount point any more (a stack goes entirely), with
// umount2 `flags` (MNT_DETACH for lazy); EBUSY is retried for a while, as containerd's
// mount.UnmountAll does. A missing target or no mount point is no error.
Status UnmountAll(const std::string& target, int flags = 0);

// Startup sweep of a temp-mount base (<root>/tmpmounts) after a crash, before serving: every
// mount at or below `base` (from /proc/self/mountinfo) is unmounted, deepest first, lazily,
// and each directory directly in `base` is rmdir-ed — never removed recursively, so a mount
// that would not go away cannot cost snapshot data. containerd does the same at start
// (mount.CleanupTempMounts). Returns how many mounts it took down; what it could not undo is
// logged and left. A missing `base` is no error.
Result<int> CleanupTempMounts(const std::string& base);

// Mounts a list of mounts, in order, on a fresh directory `<base>/<prefix>XXXXXX` (base is
// created 0700 on demand). The destructor unmounts everything (lazily, innermost first) and
// removes the directory — with rmdir only, so a failed unmount never deletes snapshot data.
// Options: the usual flag words (ro, rw, bind, rbind, nosuid, nodev, noexec, ...) become
// mount flags, the rest is passed as data. A read-only bind is remounted read-only, as
// the kernel ignores MS_RDONLY on the bind itself. No mounts → an empty directory.
class TempMount {
 public:
  // Errors: errno-mapped codes from mkdir/mkdtemp/mount, naming the mount.
  static Result<std::unique_ptr<TempMount>> Make(const std::string& base,
                                                 std::span<const Mount> mounts,
                                                 std::string_view prefix = "mount-");
  ~TempMount();
  TempMount(const TempMount&) = delete;
  TempMount& operator=(const TempMount&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  explicit TempMount(std::string dir) : dir_(std::move(dir)) {}
  Status MountOne(const Mount& m);

  std::string dir_;
  int mounted_ = 0;
};

}  // namespace berth
