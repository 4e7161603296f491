// gRPC adapter for containerd.services.containers.v1.Containers over metadata::ContainerStore.
//
// Publishes `/containers/create` {id, image, runtime{name, options}}, `/containers/update`
// {id, image, labels, snapshot_key} (the stored values) and `/containers/delete` {id}, type URLs
// containerd.events.Container*. ListStream sends one container per message. A Delete asks GC
// for a pass (the container may have been the last thing holding its snapshot).
#pragma once

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "metadata/container_store.h"
#include "metadata/gc_trigger.h"

namespace berth::services {

class ContainersService final : public containerd::services::containers::v1::Containers::Service {
 public:
  ContainersService(metadata::ContainerStore& store, events::Exchange& exchange,
                    metadata::GcTrigger& gc)
      : store_(store), exchange_(exchange), gc_(gc) {}

  grpc::Status Get(grpc::ServerContext*,
                   const containerd::services::containers::v1::GetContainerRequest*,
                   containerd::services::containers::v1::GetContainerResponse*) override;
  grpc::Status List(grpc::ServerContext*,
                    const containerd::services::containers::v1::ListContainersRequest*,
                    containerd::services::containers::v1::ListContainersResponse*) override;
  grpc::Status ListStream(
      grpc::ServerContext*, const containerd::services::containers::v1::ListContainersRequest*,
      grpc::ServerWriter<containerd::services::containers::v1::ListContainerMessage>*) override;
  grpc::Status Create(grpc::ServerContext*,
                      const containerd::services::containers::v1::CreateContainerRequest*,
                      containerd::services::containers::v1::CreateContainerResponse*) override;
  grpc::Status Update(grpc::ServerContext*,
                      const containerd::services::containers::v1::UpdateContainerRequest*,
                      containerd::services::containers::v1::UpdateContainerResponse*) override;
  grpc::Status Delete(grpc::ServerContext*,
                      const containerd::services::containers::v1::DeleteContainerRequest*,
                      google::protobuf::Empty*) override;

 private:
  metadata::ContainerStore& store_;
  events::Exchange& exchange_;
  metadata::GcTrigger& gc_;
};

}  // namespace berth::services
