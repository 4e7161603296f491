// gRPC adapters for the daemon-level services: Version, Introspection, Namespaces, Events.
// Thin: validate the request shape, call the core, translate errors with ToGrpc.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/introspection/v1/introspection.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/namespaces/v1/namespace.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.grpc.pb.h"
#include "metadata/namespaces.h"

namespace berth::services {

namespace cs = containerd::services;

class VersionService final : public cs::version::v1::Version::Service {
 public:
  VersionService(std::string version, std::string revision)
      : version_(std::move(version)), revision_(std::move(revision)) {}
  grpc::Status Version(grpc::ServerContext*, const google::protobuf::Empty*,
                       cs::version::v1::VersionResponse* resp) override;

 private:
  std::string version_, revision_;
};

// One entry of Introspection.Plugins, in containerd's vocabulary (type
// "io.containerd.grpc.v1", id "namespaces", ...). Filled in by the daemon's plugin list.
struct PluginInfo {
  std::string type;
  std::string id;
  std::vector<std::string> dependencies;  // plugin types this one needs
  std::vector<std::string> platforms;  // "os/arch[/variant]"
  std::map<std::string, std::string> exports;
  // Exports computed when asked (e.g. a snapshotter's `removal_pending`), after `exports`.
  std::function<std::map<std::string, std::string>()> live_exports;
  std::vector<std::string> capabilities;
  std::string init_error;  // non-empty: the plugin failed to load (reported as init_err)
};

class IntrospectionService final : public cs::introspection::v1::Introspection::Service {
 public:
  IntrospectionService(std::vector<PluginInfo> plugins, std::string server_uuid)
      : plugins_(std::move(plugins)), uuid_(std::move(server_uuid)) {}
  grpc::Status Plugins(grpc::ServerContext*, const cs::introspection::v1::PluginsRequest* req,
                       cs::introspection::v1::PluginsResponse* resp) override;
  grpc::Status Server(grpc::ServerContext*, const google::protobuf::Empty*,
                      cs::introspection::v1::ServerResponse* resp) override;

 private:
  std::vector<PluginInfo> plugins_;
  std::string uuid_;
};

class NamespacesService final : public cs::namespaces::v1::Namespaces::Service {
 public:
  NamespacesService(metadata::NamespaceStore& store, events::Exchange& exchange)
      : store_(store), exchange_(exchange) {}
  grpc::Status Get(grpc::ServerContext*, const cs::namespaces::v1::GetNamespaceRequest*,
                   cs::namespaces::v1::GetNamespaceResponse*) override;
  grpc::Status List(grpc::ServerContext*, const cs::namespaces::v1::ListNamespacesRequest*,
                    cs::namespaces::v1::ListNamespacesResponse*) override;
  grpc::Status Create(grpc::ServerContext*, const cs::namespaces::v1::CreateNamespaceRequest*,
                      cs::namespaces::v1::CreateNamespaceResponse*) override;
  grpc::Status Update(grpc::ServerContext*, const cs::namespaces::v1::UpdateNamespaceRequest*,
                      cs::namespaces::v1::UpdateNamespaceResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const cs::namespaces::v1::DeleteNamespaceRequest*,
                      google::protobuf::Empty*) override;

 private:
  metadata::NamespaceStore& store_;
  events::Exchange& exchange_;
};

// Subscribe is gRPC's callback API (a ServerWriteReactor, services/events_subscribe.cc): a
// subscriber holds no thread, only its queue in the exchange and its gRPC stream.
class EventsService final
    : public cs::events::v1::Events::WithCallbackMethod_Subscribe<cs::events::v1::Events::Service> {
 public:
  explicit EventsService(events::Exchange& exchange) : exchange_(exchange) {}
  grpc::Status Publish(grpc::ServerContext*, const cs::events::v1::PublishRequest*,
                       google::protobuf::Empty*) override;
  grpc::Status Forward(grpc::ServerContext*, const cs::events::v1::ForwardRequest*,
                       google::protobuf::Empty*) override;
  grpc::ServerWriteReactor<cs::events::v1::Envelope>* Subscribe(
      grpc::CallbackServerContext*, const cs::events::v1::SubscribeRequest*) override;

 private:
  events::Exchange& exchange_;
};

// Validates a complete envelope (from Events.Forward or a shim's ttrpc Forward) and
// re-broadcasts it with its own namespace, topic and time. As in containerd only namespace,
// topic and timestamp are checked: `event` may be null (an envelope without an event).
Status ForwardEnvelope(events::Exchange& exchange, const std::string& ns,
                       const std::string& topic, const google::protobuf::Timestamp* timestamp,
                       const google::protobuf::Any* event);

}  // namespace berth::services
