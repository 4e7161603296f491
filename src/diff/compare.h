// Layer creation: the difference between two directory trees as an OCI layer tar, written the
// way containerd 1.6's walking differ writes it (diff/walking + archive.WriteDiff, compat §6).
//
// The tar, applied to `lower` (ApplyLayer), yields `upper`:
//  - entries come in the walk order of diff/changes.h; names are relative ("a/b"),
//    directories end in "/"; ustar/PAX headers as in diff/tar_writer.h.
//  - Add/Modify → the entry from upper: type, mode (permissions + setuid/setgid/sticky), uid,
//    gid, mtime truncated to seconds (no atime/ctime), size and bytes of regular files,
//    symlink targets, device numbers; the security.capability xattr as
//    "SCHILY.xattr.security.capability" (the only xattr containerd writes). Sockets are left
//    out.
//  - Delete → a whiteout "<dir>/.wh.<name>": an empty regular file, mode 0, owner 0:0,
//    mtime = the time the layer was started, rounded to the second, in a plain ustar header
//    where the name allows. A deleted directory is one whiteout. No opaque markers are
//    written (containerd's double walk reports every deleted child instead).
//  - Parents: before the first entry under a directory that has not been written itself,
//    that directory is written (from upper, as a Modify), outermost first, once.
//  - Hardlinks: files with more than one link are tracked by inode (device, number). The
//    first changed name of an inode carries the data; later names become hardlink entries to
//    it, including names that did not change themselves (reported Unmodified), so the link
//    survives the layer being applied.
//  - Reading is fd-based (see changes.h): a tree changing underneath fails the diff
//    (FailedPrecondition), it never makes us read outside the tree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "diff/apply.h"
#include "diff/changes.h"
#include "diff/tar_writer.h"

namespace berth::diff {

inline constexpr char kDefaultDiffMediaType[] = "application/vnd.oci.image.layer.v1.tar+gzip";

// The compression a Diff request's media type asks for: ...layer.v1.tar → none, +gzip →
// gzip (containerd 1.6 knows these two), +zstd → zstd (as containerd 1.7 does).
// Errors: Unimplemented "unsupported diff media type: <type>" for anything else.
Result<Compression> DiffCompression(std::string_view media_type);

struct DiffOptions {
  Compression compression = Compression::kNone;  // kNone, kGzip or kZstd
  int64_t whiteout_time = 0;                     // unix nanoseconds; 0 = now
  CancelFn cancelled;
};

struct DiffResult {
  std::string uncompressed_digest;  // "sha256:..." of the tar: the layer's diffID
  int64_t uncompressed_size = 0;
  int64_t size = 0;  // bytes handed to `out` (compressed)
};

// Writes the layer taking `lower` to `upper` (both directories, normally read-only mounts)
// to `out`, compressed as asked. Errors: Canceled, FailedPrecondition (a tree changed while
// being read), the sink's errors, errno-mapped codes.
Result<DiffResult> WriteDiff(const std::string& lower, const std::string& upper,
                             const ByteSink& out, const DiffOptions& opts = {});

}  // namespace berth::diff
