// What every gRPC adapter shares: Status ⇄ grpc::Status, the namespace/lease headers,
// timestamps, and publishing proto events into the exchange.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "events/exchange.h"

namespace berth::services {

inline constexpr char kNamespaceHeader[] = "containerd-namespace";
inline constexpr char kLeaseHeader[] = "containerd-lease";

grpc::Status ToGrpc(const Status& s);

// The namespace of a call, as containerd reads it: the first `containerd-namespace` value.
// Missing or empty → FailedPrecondition "namespace is required"; invalid → InvalidArgument.
Result<std::string> RequireNamespace(const grpc::ServerContextBase* ctx);
// The `containerd-lease` header, if any.
std::optional<std::string> LeaseFromContext(const grpc::ServerContext* ctx);

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

// Runs a handler body, turning escaping exceptions into Internal so no request can kill us.
template <typename F>
grpc::Status Guard(const char* method, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return ToGrpc(Internal(std::string(method) + ": " + e.what()));
  }
}

}  // namespace berth::services
