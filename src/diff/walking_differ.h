// The walking differ (containerd: plugins/diff/walking with its Linux apply): Applier and
// Comparer over a namespaced content store, doing the mounting itself.
//
// Apply picks where to write, extracts with ApplyLayer and answers
// {application/vnd.oci.image.layer.v1.tar, diffID, uncompressed size}:
//   one overlay mount with upperdir=   → straight into the upperdir, overlay whiteouts; the
//                                        lowerdir= list (top first) gives implicit parents
//                                        their mode and owner
//   one bind mount (not read-only)     → straight into its source, naive whiteouts
//   anything else                      → mounted on a temp dir under `tmp_base`, naive
//                                        whiteouts, always unmounted again before answering
//
// Compare mounts `lower` and `upper` read-only on temp dirs (overlay: upperdir folded into the
// lowerdirs; the upper side may be a running container's live upperdir), writes the layer
// (WriteDiff) through ingest `ref` (a generated "<nanos>-<rand>" when empty, aborted again on
// failure; a given ref is truncated first and kept on failure) under the caller's lease, and
// commits it with the requested labels plus, when compressed,
// `containerd.io/uncompressed=<diffID>`. A blob that already exists keeps its labels and only
// gains that one. Media types: ...tar, +gzip, +zstd; others are Unimplemented.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "content/content.h"
#include "diff/decompress.h"
#include "diff/differ.h"

namespace berth::diff {

inline constexpr char kUncompressedTarMediaType[] = "application/vnd.oci.image.layer.v1.tar";
inline constexpr char kUncompressedLabel[] = "containerd.io/uncompressed";

class WalkingDiffer final : public Applier, public Comparer {
 public:
  // `tmp_base`: where temporary mount points are made (created on demand, 0700).
  // `max_expansion_ratio`: the decompression bound for layers (diff/decompress.h; 0 = none).
  WalkingDiffer(content::NamespacedStore& content, std::string tmp_base,
                uint64_t max_expansion_ratio = kDefaultMaxExpansionRatio)
      : content_(content),
        tmp_base_(std::move(tmp_base)),
        max_expansion_ratio_(max_expansion_ratio) {}

  Result<Descriptor> Apply(const Ctx& ctx, const Descriptor& layer,
                           const std::vector<Mount>& mounts) override;
  Result<Descriptor> Compare(const Ctx& ctx, const std::vector<Mount>& lower,
                             const std::vector<Mount>& upper,
                             const CompareOptions& opts) override;

 private:
  content::NamespacedStore& content_;
  std::string tmp_base_;
  uint64_t max_expansion_ratio_;
};

}  // namespace berth::diff
