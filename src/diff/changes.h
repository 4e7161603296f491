// The changes between two directory trees (containerd's continuity fs.Changes, double-walk
// form, which is what containerd 1.6 uses on every file system).
//
// Both trees are walked in lexical order, depth first, parents before children, and merged;
// each path of either tree is classified:
//   only in lower                 → Delete (once for a removed directory: its children are
//                                   implied, nothing more is reported under it)
//   only in upper                 → Add (directories: then each child as an Add)
//   in both, considered the same  → nothing, or Unmodified for a file with more than one
//                                   link (the layer writer needs those to keep hardlinks)
//   in both, different            → Modify (a directory that replaced a file: then its
//                                   children as Adds; a file that replaced a directory: the
//                                   directory's children are implied deleted)
// "The same" is containerd's sameFile: the same inode (device and number) on both sides, or
// equal st_mode, uid, gid, rdev and security.capability xattr, and for non-directories equal
// size and mtime seconds, then: both mtimes with zero nanoseconds (maybe truncated by a tar
// round trip) → compare the symlink targets or the bytes; both non-zero → equal nanoseconds
// decide. Directory mtimes and sizes and other xattrs are not compared, as in containerd.
//
// Everything is read through directory fds: names are never re-resolved from the roots, a
// file is opened with O_NOFOLLOW and checked with fstat, so a tree that changes while it is
// walked (a running container) cannot make us read outside it.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <string_view>

#include "common/fs.h"
#include "common/status.h"

namespace berth::diff {

enum class ChangeKind { kUnmodified = 0, kAdd = 1, kModify = 2, kDelete = 3 };

std::string_view ChangeKindName(ChangeKind kind);

struct Change {
  ChangeKind kind = ChangeKind::kAdd;
  std::string_view path;            // "/a/b": absolute within the trees, as containerd names it
  const struct stat* st = nullptr;  // upper's lstat; null for Delete
  int dirfd = -1;                   // upper's directory holding it (valid during the call; -1
                                    // for Delete)
  std::string_view name;            // its name inside dirfd
};

// Stops the walk when it returns an error (that error is returned).
using ChangeFn = std::function<Status(const Change&)>;

// True when the caller gave up; the walk then ends with Canceled.
using CancelFn = std::function<bool()>;

// Reports the changes from directory `lower` to directory `upper` in walk order.
// Errors: the callback's, Canceled, errno-mapped codes (a tree changing underneath: NotFound,
// or FailedPrecondition "changed while reading").
Status Changes(const std::string& lower, const std::string& upper, const ChangeFn& fn,
               const CancelFn& cancelled = {});

// The target of symlink `name` in `dirfd`, whatever its length.
Result<std::string> ReadLinkAt(int dirfd, const std::string& name);

// security.capability of `name` in `dirfd`, the link itself ("" when absent or unsupported).
Result<std::string> Capability(int dirfd, std::string_view name);

// Opens `rel` ("a/b", no leading slash) under `root_fd` one component at a time, never
// following a symlink (O_PATH). Errors: errno-mapped (ELOOP/ENOTDIR for a symlink).
Result<UniqueFd> OpenDirBeneath(int root_fd, std::string_view rel);

}  // namespace berth::diff
