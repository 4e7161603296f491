#include "daemon/plugins.h"

namespace berth::daemon {

std::vector<services::PluginInfo> ProvidedPlugins() {
  constexpr char kEvent[] = "io.containerd.event.v1";
  constexpr char kMetadata[] = "io.containerd.metadata.v1";
  constexpr char kService[] = "io.containerd.service.v1";
  constexpr char kGrpc[] = "io.containerd.grpc.v1";
  return {
      {.type = kEvent, .id = "exchange"},
      {.type = kMetadata, .id = "sqlite"},
      {.type = kService, .id = "introspection-service"},
      {.type = kService, .id = "namespaces-service", .dependencies = {kEvent, kMetadata}},
      {.type = kGrpc, .id = "events", .dependencies = {kEvent}},
      {.type = kGrpc, .id = "healthcheck"},
      {.type = kGrpc, .id = "introspection", .dependencies = {kService}},
      {.type = kGrpc, .id = "namespaces", .dependencies = {kService}},
      {.type = kGrpc, .id = "version"},
  };
}

}  // namespace berth::daemon
