// gRPC adapter for containerd.services.diff.v1.Diff (containerd's services/diff, compat §2.8,
// §6.2): protos in, diff::Applier / diff::Comparer (today the walking differ,
// diff/walking_differ.h, which documents what Apply and Diff do), protos out.
#pragma once

#include "diff/differ.h"
#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"

namespace berth::services {

class DiffService final : public containerd::services::diff::v1::Diff::Service {
 public:
  DiffService(diff::Applier& applier, diff::Comparer& comparer)
      : applier_(applier), comparer_(comparer) {}

  grpc::Status Apply(grpc::ServerContext*, const containerd::services::diff::v1::ApplyRequest*,
                     containerd::services::diff::v1::ApplyResponse*) override;
  grpc::Status Diff(grpc::ServerContext*, const containerd::services::diff::v1::DiffRequest*,
                    containerd::services::diff::v1::DiffResponse*) override;

 private:
  diff::Applier& applier_;
  diff::Comparer& comparer_;
};

}  // namespace berth::services
