// gRPC adapter for containerd.services.diff.v1.Diff (containerd's services/diff + diff/apply,
// compat §2.8, §6.2).
//
// Apply reads the layer blob from the content store in the caller's namespace (NotFound if
// the namespace does not hold it), picks where to write, extracts with diff::ApplyLayer and
// answers {application/vnd.oci.image.layer.v1.tar, diffID, uncompressed size}:
//   one overlay mount with upperdir=   → straight into the upperdir, overlay whiteouts
//   one bind mount (not read-only)     → straight into its source, naive whiteouts
//   anything else                      → mounted on a temp dir under `tmp_base`, naive
//                                        whiteouts, always unmounted again
//
// Diff mounts `left` and `right` read-only on temp dirs (overlay: upperdir folded into the
// lowerdirs), writes the layer taking left to right (diff::WriteDiff) into the content store
// through ingest `ref` (a generated "<nanos>-<rand>" when empty, aborted again on failure; a
// given ref is truncated first and kept on failure) under the caller's lease, and commits it
// with the request labels plus, when compressed, `containerd.io/uncompressed=<diffID>`. A blob
// that already exists keeps its labels and only gains that one. Media type: request's or
// ...tar+gzip; tar, +gzip, +zstd are written, others are Unimplemented "unsupported diff
// media type: <type>". Answers {media type, digest, size} of the stored blob.
#pragma once

#include <cstdint>
#include <string>

#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "metadata/content_store.h"

namespace berth::services {

class DiffService final : public containerd::services::diff::v1::Diff::Service {
 public:
  // `tmp_base`: where temporary mount points are made (created on demand, 0700).
  // `max_expansion_ratio`: the decompression bound for layers (diff/decompress.h).
  DiffService(metadata::ContentStore& content, std::string tmp_base,
              uint64_t max_expansion_ratio = 1100)
      : content_(content),
        tmp_base_(std::move(tmp_base)),
        max_expansion_ratio_(max_expansion_ratio) {}

  grpc::Status Apply(grpc::ServerContext*, const containerd::services::diff::v1::ApplyRequest*,
                     containerd::services::diff::v1::ApplyResponse*) override;
  grpc::Status Diff(grpc::ServerContext*, const containerd::services::diff::v1::DiffRequest*,
                    containerd::services::diff::v1::DiffResponse*) override;

 private:
  metadata::ContentStore& content_;
  std::string tmp_base_;
  uint64_t max_expansion_ratio_;
};

}  // namespace berth::services
