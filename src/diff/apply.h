// Layer extraction (containerd's diff/apply + archive/tar.go, compat §6).
//
// ApplyLayer reads a layer blob (plain, gzip or zstd, detected by magic), parses the tar with
// libarchive (read side only) and performs every write itself through a dirfd on the target
// root: parents are resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) afresh for
// each entry (no path cache, CVE-2025-47290), the final component is never followed
// (CVE-2021-32760), names are cleaned and clamped to the root, hardlink targets resolved inside
// the root. Whiteouts are converted per `mode` (§6.3).
//
// The result's digest is sha256 over the whole decompressed stream (read to EOF, past the tar
// end marker) and size its byte count: the layer's diffID.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "content/content.h"
#include "diff/decompress.h"

namespace berth::diff {

// Compression a media type announces (§6.1); Unimplemented for anything we cannot unpack.
Result<Compression> CompressionForMediaType(std::string_view media_type);

enum class WhiteoutMode {
  kNaive,    // delete whited-out paths; opaque dir → remove entries not from this layer
  kOverlay,  // write into an overlay upperdir: 0:0 char devices, trusted.overlay.opaque=y
};

// How deep a tree a layer may remove (whiteout, opaque directory, entry replacing a directory):
// deeper is InvalidArgument. A tar name is shorter than PATH_MAX, so plain names reach at most
// 2048 levels; only trees built through symlinked directories (or by a container) go deeper,
// and a bound keeps one layer from costing unbounded time and memory. Removal itself is
// iterative with bounded fds at any depth (common/fs.h), so the bound is not about the stack.
inline constexpr size_t kMaxRemoveDepth = 4096;

struct ApplyOptions {
  WhiteoutMode mode = WhiteoutMode::kNaive;
  // Overlay mode: the lower layers, top first; implicitly created parents copy mode and owner
  // from the first lowerdir that has the directory.
  std::vector<std::string> lowerdirs;
  // The expansion bound for compressed layers (diff/decompress.h); 0 = none.
  uint64_t max_expansion_ratio = kDefaultMaxExpansionRatio;
};

struct ApplyResult {
  std::string digest;  // "sha256:<hex>" of the decompressed stream
  int64_t size = 0;    // decompressed bytes
};

// Errors: Unimplemented (media type), InvalidArgument (bad archive: escaping whiteout, unknown
// entry type, name too long, bad compression data), DataLoss (truncated stream), errno-mapped
// codes from the file system.
Result<ApplyResult> ApplyLayer(content::ReaderAt& blob, std::string_view media_type,
                               const std::string& root, const ApplyOptions& opts = {});

}  // namespace berth::diff
