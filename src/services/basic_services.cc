#include "services/basic_services.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include <memory>

#include "common/filters.h"
#include "common/log.h"
#include "github.com/containerd/containerd/api/events/container.pb.h"
#include "github.com/containerd/containerd/api/events/content.pb.h"
#include "github.com/containerd/containerd/api/events/image.pb.h"
#include "github.com/containerd/containerd/api/events/namespace.pb.h"
#include "github.com/containerd/containerd/api/events/snapshot.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "services/grpc_util.h"

namespace berth::services {


grpc::Status VersionService::Version(grpc::ServerContext*, const google::protobuf::Empty*,
                                     cs::version::v1::VersionResponse* resp) {
  resp->set_version(version_);
  resp->set_revision(revision_);
  return grpc::Status::OK;
}

// ---- Introspection ---------------------------------------------------------------------

grpc::Status IntrospectionService::Plugins(grpc::ServerContext*,
                                           const cs::introspection::v1::PluginsRequest* req,
                                           cs::introspection::v1::PluginsResponse* resp) {
  return HandleNoNamespace("Plugins", [&]() -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(exprs));
    for (const PluginInfo& p : plugins_) {
      // containerd's plugin adaptor answers only `type` and `id`.
      auto field = [&](std::span<const std::string> fp) -> std::optional<std::string> {
        if (fp.size() != 1) return std::nullopt;
        if (fp[0] == "type" && !p.type.empty()) return p.type;
        if (fp[0] == "id" && !p.id.empty()) return p.id;
        return std::nullopt;
      };
      if (!filter.Match(field)) continue;
      auto* out = resp->add_plugins();
      out->set_type(p.type);
      out->set_id(p.id);
      for (const auto& r : p.dependencies) out->add_requires_(r);
      for (const auto& plat : p.platforms) {
        auto* o = out->add_platforms();
        size_t a = plat.find('/');
        size_t b = a == std::string::npos ? a : plat.find('/', a + 1);
        o->set_os(plat.substr(0, a));
        if (a != std::string::npos) o->set_architecture(plat.substr(a + 1, b - a - 1));
        if (b != std::string::npos) o->set_variant(plat.substr(b + 1));
      }
      for (const auto& [k, v] : p.exports) (*out->mutable_exports())[k] = v;
      if (p.live_exports) {
        for (const auto& [k, v] : p.live_exports()) (*out->mutable_exports())[k] = v;
      }
      for (const auto& c : p.capabilities) out->add_capabilities(c);
      if (!p.init_error.empty()) {
        out->mutable_init_err()->set_code(static_cast<int>(Code::kUnknown));
        out->mutable_init_err()->set_message(p.init_error);
      }
    }
    return Status::Ok();
  });
}

grpc::Status IntrospectionService::Server(grpc::ServerContext*, const google::protobuf::Empty*,
                                          cs::introspection::v1::ServerResponse* resp) {
  resp->set_uuid(uuid_);
  return grpc::Status::OK;
}

// ---- Namespaces ------------------------------------------------------------------------

namespace {

// containerd publishes /namespaces/create and /namespaces/update in the *caller's* namespace
// (`ctr ns create n1` → envelope namespace "default"); only /namespaces/delete uses the deleted
// name. Without a valid caller namespace containerd fails the call after the change is made;
// we publish under the namespace's own name instead.
std::string EventNamespace(const grpc::ServerContext* ctx, const std::string& fallback) {
  auto ns = RequireNamespace(ctx);
  return ns ? *ns : fallback;
}

}  // namespace

grpc::Status NamespacesService::Get(grpc::ServerContext*,
                                    const cs::namespaces::v1::GetNamespaceRequest* req,
                                    cs::namespaces::v1::GetNamespaceResponse* resp) {
  return HandleNoNamespace("Namespaces.Get", [&]() -> Status {
    // Never NotFound: an unknown namespace has no labels (clients read defaults this way).
    ASSIGN_OR_RETURN(Labels labels, store_.GetLabels(req->name()));
    resp->mutable_namespace_()->set_name(req->name());
    for (const auto& [k, v] : labels) (*resp->mutable_namespace_()->mutable_labels())[k] = v;
    return Status::Ok();
  });
}

grpc::Status NamespacesService::List(grpc::ServerContext*,
                                     const cs::namespaces::v1::ListNamespacesRequest*,
                                     cs::namespaces::v1::ListNamespacesResponse* resp) {
  return HandleNoNamespace("Namespaces.List", [&]() -> Status {
    // containerd ignores the request's filter string; so do we.
    ASSIGN_OR_RETURN(auto all, store_.List());
    for (const auto& ns : all) {
      auto* out = resp->add_namespaces();
      out->set_name(ns.name);
      for (const auto& [k, v] : ns.labels) (*out->mutable_labels())[k] = v;
    }
    return Status::Ok();
  });
}

grpc::Status NamespacesService::Create(grpc::ServerContext* ctx,
                                       const cs::namespaces::v1::CreateNamespaceRequest* req,
                                       cs::namespaces::v1::CreateNamespaceResponse* resp) {
  return HandleNoNamespace("Namespaces.Create", [&]() -> Status {
    const auto& ns = req->namespace_();
    Labels labels(ns.labels().begin(), ns.labels().end());
    RETURN_IF_ERROR(store_.Create(ns.name(), labels));
    *resp->mutable_namespace_() = ns;
    containerd::events::NamespaceCreate ev;
    ev.set_name(ns.name());
    *ev.mutable_labels() = ns.labels();
    PublishEvent(exchange_, EventNamespace(ctx, ns.name()), "/namespaces/create", ev);
    return Status::Ok();
  });
}

grpc::Status NamespacesService::Update(grpc::ServerContext* ctx,
                                       const cs::namespaces::v1::UpdateNamespaceRequest* req,
                                       cs::namespaces::v1::UpdateNamespaceResponse* resp) {
  return HandleNoNamespace("Namespaces.Update", [&]() -> Status {
    const auto& ns = req->namespace_();
    bool replace = false;
    metadata::LabelEdits edits;
    auto value_of = [&](const std::string& key) {
      auto it = ns.labels().find(key);
      return it == ns.labels().end() ? std::string() : it->second;
    };
    if (req->has_update_mask() && req->update_mask().paths_size() > 0) {
      for (const auto& path : req->update_mask().paths()) {
        if (path.starts_with("labels.")) {
          std::string key = path.substr(7);
          edits.emplace_back(key, value_of(key));
        } else if (path == "labels") {
          replace = true;
          for (const auto& [k, v] : ns.labels()) edits.emplace_back(k, v);
        } else {
          return InvalidArgument("cannot update " + Quote(path) + " field");
        }
      }
    } else {
      // No mask: the request's labels replace all of them.
      replace = true;
      for (const auto& [k, v] : ns.labels()) edits.emplace_back(k, v);
    }
    ASSIGN_OR_RETURN(Labels labels, store_.SetLabels(ns.name(), replace, edits));
    resp->mutable_namespace_()->set_name(ns.name());
    for (const auto& [k, v] : labels) (*resp->mutable_namespace_()->mutable_labels())[k] = v;
    containerd::events::NamespaceUpdate ev;
    ev.set_name(ns.name());
    *ev.mutable_labels() = ns.labels();
    PublishEvent(exchange_, EventNamespace(ctx, ns.name()), "/namespaces/update", ev);
    return Status::Ok();
  });
}

grpc::Status NamespacesService::Delete(grpc::ServerContext*,
                                       const cs::namespaces::v1::DeleteNamespaceRequest* req,
                                       google::protobuf::Empty*) {
  return HandleNoNamespace("Namespaces.Delete", [&]() -> Status {
    RETURN_IF_ERROR(store_.Delete(req->name()));
    containerd::events::NamespaceDelete ev;
    ev.set_name(req->name());
    PublishEvent(exchange_, req->name(), "/namespaces/delete", ev);
    return Status::Ok();
  });
}

// ---- Events ----------------------------------------------------------------------------

namespace {


// Decodes an event Any through the generated descriptor pool, so `event.<field>` filters work
// for every containerd event type (and any other message compiled into berthd).
filters::Adaptor DecodedFields(const google::protobuf::Any& any) {
  const auto* desc =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(any.type_url());
  if (!desc) return {};
  const auto* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(desc);
  if (!proto) return {};
  std::shared_ptr<google::protobuf::Message> msg(proto->New());
  if (!msg->ParseFromString(any.value())) return {};
  return [msg](std::span<const std::string> fp) { return MessageField(*msg, fp); };
}

events::Envelope FromProto(const std::string& ns, const std::string& topic,
                           const google::protobuf::Any& any) {
  events::Envelope env;
  env.ns = ns;
  env.topic = topic;
  env.type_url = any.type_url();
  env.payload = any.value();
  env.event_fields = DecodedFields(any);
  return env;
}

}  // namespace

grpc::Status EventsService::Publish(grpc::ServerContext* ctx,
                                    const cs::events::v1::PublishRequest* req,
                                    google::protobuf::Empty*) {
  return Handle("Events.Publish", ctx, [&](const CallCtx& c) -> Status {
    if (!req->has_event()) return InvalidArgument("event must not be empty");
    return exchange_.Publish(FromProto(c.ns, req->topic(), req->event()));
  });
}

grpc::Status EventsService::Forward(grpc::ServerContext*, const cs::events::v1::ForwardRequest* req,
                                    google::protobuf::Empty*) {
  return HandleNoNamespace("Events.Forward", [&]() -> Status {
    const auto& e = req->envelope();
    return ForwardEnvelope(exchange_, e.namespace_(), e.topic(),
                           e.has_timestamp() ? &e.timestamp() : nullptr,
                           e.has_event() ? &e.event() : nullptr);
  });
}

Status ForwardEnvelope(events::Exchange& exchange, const std::string& ns,
                       const std::string& topic, const google::protobuf::Timestamp* timestamp,
                       const google::protobuf::Any* event) {
  // containerd validates only namespace, topic and timestamp: an envelope without an event is
  // forwarded as it is (subscribers see an empty Any). A forwarded event keeps its own time.
  if (!timestamp) return InvalidArgument("timestamp must be set on forwarded event");
  events::Envelope env = FromProto(ns, topic, event ? *event : google::protobuf::Any());
  env.timestamp_ns = FromTimestamp(*timestamp);
  return exchange.Forward(std::move(env));
}

// EventsService::Subscribe: services/events_subscribe.cc.

}  // namespace berth::services
