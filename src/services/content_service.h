// gRPC adapter for containerd.services.content.v1.Content over metadata::ContentStore
// (containerd's services/content/contentserver). Every call needs the namespace header; writes
// honour the `containerd-lease` header.
//
// Wire behaviour clients depend on (compat §2.5, §4):
//  - List streams batches of at most 100 infos.
//  - Read streams chunks of at most 1 MiB covering [offset, offset+size) clipped to the blob
//    (size <= 0: to the end); offset past the end is OUT_OF_RANGE. Response offsets are
//    absolute positions in the blob (clients ignore them).
//  - Write is the STAT/WRITE/COMMIT conversation of compat §4.2: exactly one response per
//    request; the first request names the ref; a request whose `expected` digest is already
//    in the namespace aborts the ingest and ends the stream with ALREADY_EXISTS; a write at
//    the wrong offset is OUT_OF_RANGE; offset 0 with data present restarts the ingest; the
//    stream ends after the COMMIT response. A client that goes away leaves the ingest
//    resumable.
//  - Delete publishes `/content/delete` (containerd.events.ContentDelete) and asks GC for a
//    pass; the bytes are freed by GC once no namespace references them.
#pragma once

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/content/v1/content.grpc.pb.h"
#include "metadata/content_store.h"
#include "metadata/gc_trigger.h"

namespace berth::services {

class ContentService final : public containerd::services::content::v1::Content::Service {
 public:
  using Api = containerd::services::content::v1::Content::Service;
  ContentService(metadata::ContentStore& store, events::Exchange& exchange, metadata::GcTrigger& gc)
      : store_(store), exchange_(exchange), gc_(gc) {}

  grpc::Status Info(grpc::ServerContext*, const containerd::services::content::v1::InfoRequest*,
                    containerd::services::content::v1::InfoResponse*) override;
  grpc::Status Update(grpc::ServerContext*, const containerd::services::content::v1::UpdateRequest*,
                      containerd::services::content::v1::UpdateResponse*) override;
  grpc::Status List(
      grpc::ServerContext*, const containerd::services::content::v1::ListContentRequest*,
      grpc::ServerWriter<containerd::services::content::v1::ListContentResponse>*) override;
  grpc::Status Delete(grpc::ServerContext*,
                      const containerd::services::content::v1::DeleteContentRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Read(
      grpc::ServerContext*, const containerd::services::content::v1::ReadContentRequest*,
      grpc::ServerWriter<containerd::services::content::v1::ReadContentResponse>*) override;
  grpc::Status Status(grpc::ServerContext*, const containerd::services::content::v1::StatusRequest*,
                      containerd::services::content::v1::StatusResponse*) override;
  grpc::Status ListStatuses(grpc::ServerContext*,
                            const containerd::services::content::v1::ListStatusesRequest*,
                            containerd::services::content::v1::ListStatusesResponse*) override;
  grpc::Status Write(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<containerd::services::content::v1::WriteContentResponse,
                               containerd::services::content::v1::WriteContentRequest>*) override;
  grpc::Status Abort(grpc::ServerContext*, const containerd::services::content::v1::AbortRequest*,
                     google::protobuf::Empty*) override;

 private:
  metadata::ContentStore& store_;
  events::Exchange& exchange_;
  metadata::GcTrigger& gc_;
};

}  // namespace berth::services
