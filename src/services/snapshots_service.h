// gRPC adapter for containerd.services.snapshots.v1.Snapshots over snapshots::Snapshotter
// (containerd's services/snapshots/service.go). Holds only name → Snapshotter; it never knows
// which implementation serves a name.
//
// Wire behaviour (compat §2.7): empty snapshotter → InvalidArgument "snapshotter argument
// missing"; unknown → InvalidArgument "snapshotter not loaded: <name>". List streams batches of
// at most 100 infos. Prepare/Commit/Remove publish /snapshot/prepare|commit|remove; Remove asks
// GC for a pass (as containerd's metadata marks only Remove dirty: a pass after Commit would
// collect the unleased result of `ctr snapshots commit` at once). The `containerd-lease` header attaches created snapshots.
#pragma once

#include <map>
#include <string>

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "metadata/gc_trigger.h"
#include "snapshots/snapshotter.h"

namespace berth::services {

class SnapshotsService final : public containerd::services::snapshots::v1::Snapshots::Service {
 public:
  SnapshotsService(std::map<std::string, snapshots::Snapshotter*> snapshotters,
                   events::Exchange& exchange, metadata::GcTrigger& gc)
      : snapshotters_(std::move(snapshotters)), exchange_(exchange), gc_(gc) {}

  grpc::Status Prepare(grpc::ServerContext*,
                       const containerd::services::snapshots::v1::PrepareSnapshotRequest*,
                       containerd::services::snapshots::v1::PrepareSnapshotResponse*) override;
  grpc::Status View(grpc::ServerContext*,
                    const containerd::services::snapshots::v1::ViewSnapshotRequest*,
                    containerd::services::snapshots::v1::ViewSnapshotResponse*) override;
  grpc::Status Mounts(grpc::ServerContext*,
                      const containerd::services::snapshots::v1::MountsRequest*,
                      containerd::services::snapshots::v1::MountsResponse*) override;
  grpc::Status Commit(grpc::ServerContext*,
                      const containerd::services::snapshots::v1::CommitSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Remove(grpc::ServerContext*,
                      const containerd::services::snapshots::v1::RemoveSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Stat(grpc::ServerContext*,
                    const containerd::services::snapshots::v1::StatSnapshotRequest*,
                    containerd::services::snapshots::v1::StatSnapshotResponse*) override;
  grpc::Status Update(grpc::ServerContext*,
                      const containerd::services::snapshots::v1::UpdateSnapshotRequest*,
                      containerd::services::snapshots::v1::UpdateSnapshotResponse*) override;
  grpc::Status List(
      grpc::ServerContext*, const containerd::services::snapshots::v1::ListSnapshotsRequest*,
      grpc::ServerWriter<containerd::services::snapshots::v1::ListSnapshotsResponse>*) override;
  grpc::Status Usage(grpc::ServerContext*,
                     const containerd::services::snapshots::v1::UsageRequest*,
                     containerd::services::snapshots::v1::UsageResponse*) override;
  grpc::Status Cleanup(grpc::ServerContext*,
                       const containerd::services::snapshots::v1::CleanupRequest*,
                       google::protobuf::Empty*) override;

 private:
  // The snapshotter named in a request and the call's Ctx, or the error to return.
  Result<std::pair<snapshots::Snapshotter*, snapshots::Ctx>> Resolve(grpc::ServerContext* ctx,
                                                                     const std::string& name);

  std::map<std::string, snapshots::Snapshotter*> snapshotters_;
  events::Exchange& exchange_;
  metadata::GcTrigger& gc_;
};

}  // namespace berth::services
