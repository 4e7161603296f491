#include "services/grpc_util.h"

#include <google/protobuf/any.pb.h>

#include <chrono>
#include <memory>

#include "common/log.h"
#include "common/validate.h"

namespace berth::services {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), s.message());
}

Result<std::string> RequireNamespace(const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(kNamespaceHeader);
  if (it == md.end() || it->second.empty()) {
    return std::unexpected(FailedPrecondition("namespace is required"));
  }
  std::string ns(it->second.data(), it->second.size());
  if (Status s = ValidateIdentifier(ns); !s.ok()) {
    return std::unexpected(s.Wrap("namespace validation"));
  }
  return ns;
}

std::optional<std::string> LeaseFromContext(const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(kLeaseHeader);
  if (it == md.end() || it->second.empty()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

Result<CallCtx> RequireCallCtx(const grpc::ServerContextBase* ctx) {
  ASSIGN_OR_RETURN(std::string ns, RequireNamespace(ctx));
  return CallCtx{.ns = std::move(ns), .lease = LeaseFromContext(ctx).value_or("")};
}

google::protobuf::Timestamp ToTimestamp(int64_t unix_nanos) {
  google::protobuf::Timestamp ts;
  int64_t secs = unix_nanos / 1000000000;
  int64_t nanos = unix_nanos % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --secs;
  }
  ts.set_seconds(secs);
  ts.set_nanos(static_cast<int32_t>(nanos));
  return ts;
}

int64_t FromTimestamp(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000 + ts.nanos();
}

std::string TypeUrl(const google::protobuf::Message& m) { return m.GetDescriptor()->full_name(); }

std::optional<std::string> MessageField(const google::protobuf::Message& m,
                                        std::span<const std::string> fieldpath) {
  using google::protobuf::FieldDescriptor;
  if (fieldpath.empty()) return std::nullopt;
  const auto* fd = m.GetDescriptor()->FindFieldByName(fieldpath[0]);
  if (!fd) return std::nullopt;
  const auto* refl = m.GetReflection();
  if (fd->is_map()) {
    // map<string,string>: the rest of the path, joined by '.', is the key.
    const auto* entry = fd->message_type();
    if (entry->map_key()->type() != FieldDescriptor::TYPE_STRING ||
        entry->map_value()->type() != FieldDescriptor::TYPE_STRING || fieldpath.size() < 2) {
      return std::nullopt;
    }
    std::string key;
    for (size_t i = 1; i < fieldpath.size(); ++i) key += (i > 1 ? "." : "") + fieldpath[i];
    for (int i = 0; i < refl->FieldSize(m, fd); ++i) {
      const auto& e = refl->GetRepeatedMessage(m, fd, i);
      const auto* er = e.GetReflection();
      if (er->GetString(e, entry->map_key()) == key) return er->GetString(e, entry->map_value());
    }
    return std::nullopt;
  }
  if (fd->is_repeated()) return std::nullopt;
  if (fd->type() == FieldDescriptor::TYPE_STRING) {
    if (fieldpath.size() != 1) return std::nullopt;
    std::string v = refl->GetString(m, fd);
    if (v.empty()) return std::nullopt;
    return v;
  }
  if (fd->type() == FieldDescriptor::TYPE_MESSAGE) {
    if (!refl->HasField(m, fd)) return std::nullopt;
    return MessageField(refl->GetMessage(m, fd), fieldpath.subspan(1));
  }
  return std::nullopt;
}

void PublishEvent(events::Exchange& exchange, const std::string& ns, const std::string& topic,
                  const google::protobuf::Message& event) {
  events::Envelope env;
  env.ns = ns;
  env.topic = topic;
  env.type_url = TypeUrl(event);
  env.payload = event.SerializeAsString();
  std::shared_ptr<google::protobuf::Message> copy(event.New());
  copy->CopyFrom(event);
  env.event_fields = [copy](std::span<const std::string> fp) { return MessageField(*copy, fp); };
  if (Status s = exchange.Publish(std::move(env)); !s.ok()) {
    spdlog::warn("publish event topic={} ns={}: {}", topic, ns, s.ToString());
  }
}

}  // namespace berth::services
