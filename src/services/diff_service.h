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
// Diff (compare two mount sets) is not implemented yet: Unimplemented.
#pragma once

#include <string>

#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "metadata/content_store.h"

namespace berth::services {

class DiffService final : public containerd::services::diff::v1::Diff::Service {
 public:
  // `tmp_base`: where temporary mount points are made (created on demand, 0700).
  DiffService(metadata::ContentStore& content, std::string tmp_base)
      : content_(content), tmp_base_(std::move(tmp_base)) {}

  grpc::Status Apply(grpc::ServerContext*, const containerd::services::diff::v1::ApplyRequest*,
                     containerd::services::diff::v1::ApplyResponse*) override;
  grpc::Status Diff(grpc::ServerContext*, const containerd::services::diff::v1::DiffRequest*,
                    containerd::services::diff::v1::DiffResponse*) override;

 private:
  metadata::ContentStore& content_;
  std::string tmp_base_;
};

}  // namespace berth::services
