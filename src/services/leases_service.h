// gRPC adapter for containerd.services.leases.v1.Leases over metadata::LeaseStore.
//
// Differences from the store: a Create without an id gets a random one, in the form the Go
// client generates ("<nanosecond of the second>-<4 chars of base64url>"); deletions ask GC for a
// pass (a `sync` Delete waits for one). Leases publish no events, as in containerd.
#pragma once

#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"
#include "metadata/gc_trigger.h"
#include "metadata/lease_store.h"

namespace berth::services {

class LeasesService final : public containerd::services::leases::v1::Leases::Service {
 public:
  LeasesService(metadata::LeaseStore& store, metadata::GcTrigger& gc) : store_(store), gc_(gc) {}

  grpc::Status Create(grpc::ServerContext*, const containerd::services::leases::v1::CreateRequest*,
                      containerd::services::leases::v1::CreateResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const containerd::services::leases::v1::DeleteRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status List(grpc::ServerContext*, const containerd::services::leases::v1::ListRequest*,
                    containerd::services::leases::v1::ListResponse*) override;
  grpc::Status AddResource(grpc::ServerContext*,
                           const containerd::services::leases::v1::AddResourceRequest*,
                           google::protobuf::Empty*) override;
  grpc::Status DeleteResource(grpc::ServerContext*,
                              const containerd::services::leases::v1::DeleteResourceRequest*,
                              google::protobuf::Empty*) override;
  grpc::Status ListResources(grpc::ServerContext*,
                             const containerd::services::leases::v1::ListResourcesRequest*,
                             containerd::services::leases::v1::ListResourcesResponse*) override;

 private:
  metadata::LeaseStore& store_;
  metadata::GcTrigger& gc_;
};

}  // namespace berth::services
