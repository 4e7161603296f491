// gRPC adapter for containerd.services.images.v1.Images over metadata::ImageStore.
//
// Publishes `/images/create`, `/images/update` (both {name, labels} with the stored labels) and
// `/images/delete` {name}; their type URLs are containerd.services.images.v1.Image* (compat
// §1.5). A Delete asks GC for a pass, and waits for it when `sync` is set.
#pragma once

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "metadata/gc_trigger.h"
#include "metadata/image_store.h"

namespace berth::services {

class ImagesService final : public containerd::services::images::v1::Images::Service {
 public:
  ImagesService(metadata::ImageStore& store, events::Exchange& exchange, metadata::GcTrigger& gc)
      : store_(store), exchange_(exchange), gc_(gc) {}

  grpc::Status Get(grpc::ServerContext*, const containerd::services::images::v1::GetImageRequest*,
                   containerd::services::images::v1::GetImageResponse*) override;
  grpc::Status List(grpc::ServerContext*,
                    const containerd::services::images::v1::ListImagesRequest*,
                    containerd::services::images::v1::ListImagesResponse*) override;
  grpc::Status Create(grpc::ServerContext*,
                      const containerd::services::images::v1::CreateImageRequest*,
                      containerd::services::images::v1::CreateImageResponse*) override;
  grpc::Status Update(grpc::ServerContext*,
                      const containerd::services::images::v1::UpdateImageRequest*,
                      containerd::services::images::v1::UpdateImageResponse*) override;
  grpc::Status Delete(grpc::ServerContext*,
                      const containerd::services::images::v1::DeleteImageRequest*,
                      google::protobuf::Empty*) override;

 private:
  metadata::ImageStore& store_;
  events::Exchange& exchange_;
  metadata::GcTrigger& gc_;
};

}  // namespace berth::services
