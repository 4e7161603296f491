// What every gRPC adapter shares: the handler wrapper (namespace, exception guard,
// Status → grpc::Status once), the namespace/lease headers, timestamps, and publishing proto
// events into the exchange.
//
// A handler is written as a function returning berth::Status, like the rest of the tree:
//
//   grpc::Status ImagesService::Get(grpc::ServerContext* ctx, const GetImageRequest* req,
//                                   GetImageResponse* resp) {
//     return Handle("Images.Get", ctx, [&](const CallCtx& c) -> Status {
//       ASSIGN_OR_RETURN(metadata::Image img, store_.Get(c.ns, req->name()));
//       ToProto(img, resp->mutable_image());
//       return Status::Ok();
//     });
//   }
//
// Codes and messages reach the client unchanged (Code values are gRPC's): clients branch on
// the code, and tests compare messages with containerd's. Streaming handlers use the same
// wrapper; a client that went away is answered with Status(Code::kCanceled, "client gone").
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <utility>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "events/exchange.h"

namespace berth::services {

inline constexpr char kNamespaceHeader[] = "containerd-namespace";
inline constexpr char kLeaseHeader[] = "containerd-lease";

// The one Status → grpc::Status mapping: same code number, same message.
grpc::Status ToGrpc(const Status& s);

// The namespace of a call, as containerd reads it: the first `containerd-namespace` value.
// Missing or empty → FailedPrecondition "namespace is required"; invalid → InvalidArgument.
Result<std::string> RequireNamespace(const grpc::ServerContextBase* ctx);
// The `containerd-lease` header, if any.
std::optional<std::string> LeaseFromContext(const grpc::ServerContextBase* ctx);

// What a namespaced handler knows about its call (containerd carries both in the context).
struct CallCtx {
  std::string ns;     // validated namespace
  std::string lease;  // the `containerd-lease` header; "" = none
};

// RequireNamespace plus the lease header. For handlers that must validate something before
// the namespace (as containerd does) and so use HandleNoNamespace.
Result<CallCtx> RequireCallCtx(const grpc::ServerContextBase* ctx);

// Runs a handler body that needs no namespace (`Status body()`), mapping its Status to gRPC and
// any escaping exception to Internal "<method>: <what>", so no request can kill the daemon.
template <typename F>
grpc::Status HandleNoNamespace(const char* method, F&& body) {
  try {
    return ToGrpc(std::forward<F>(body)());
  } catch (const std::exception& e) {
    return ToGrpc(Internal(std::string(method) + ": " + e.what()));
  }
}

// Runs a namespaced handler body (`Status body(const CallCtx&)`): the namespace is checked
// first (FailedPrecondition "namespace is required", InvalidArgument for a bad name), then as
// HandleNoNamespace.
template <typename F>
grpc::Status Handle(const char* method, const grpc::ServerContextBase* ctx, F&& body) {
  return HandleNoNamespace(method, [&]() -> Status {
    ASSIGN_OR_RETURN(CallCtx c, RequireCallCtx(ctx));
    return body(c);
  });
}

google::protobuf::Timestamp ToTimestamp(int64_t unix_nanos);
int64_t FromTimestamp(const google::protobuf::Timestamp& ts);
using ::berth::NowNanos;  // common/clock.h

// Go typeurl naming: the message's full proto name, no "type.googleapis.com/" prefix.
std::string TypeUrl(const google::protobuf::Message& m);

// Field lookup into a message by proto field names, for `event.<field>` filters: strings and
// string maps answer; nested messages recurse; other types are "not present", as containerd's
// generated fieldpath adaptors do.
std::optional<std::string> MessageField(const google::protobuf::Message& m,
                                        std::span<const std::string> fieldpath);

// Publishes `event` under `topic` in namespace `ns`. Failures are logged, not returned: an
// event that cannot be delivered never fails the mutation that caused it.
void PublishEvent(events::Exchange& exchange, const std::string& ns, const std::string& topic,
                  const google::protobuf::Message& event);

}  // namespace berth::services
