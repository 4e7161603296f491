#include "daemon/plugins.h"

namespace berth::daemon {

std::vector<services::PluginInfo> ProvidedPlugins() {
  constexpr char kEvent[] = "io.containerd.event.v1";
  constexpr char kMetadata[] = "io.containerd.metadata.v1";
  constexpr char kService[] = "io.containerd.service.v1";
  constexpr char kGrpc[] = "io.containerd.grpc.v1";
  // In containerd 1.6.20's order (`ctr plugins ls` prints them as listed): metadata before the
  // exchange, and the introspection grpc plugin ahead of the others.
  return {
      {.type = "io.containerd.content.v1", .id = "content"},
      {.type = "io.containerd.snapshotter.v1", .id = "native", .platforms = {"linux/amd64"}},
      {.type = "io.containerd.snapshotter.v1", .id = "overlayfs", .platforms = {"linux/amd64"}},
      {.type = kMetadata, .id = "sqlite"},
      {.type = "io.containerd.differ.v1", .id = "walking", .dependencies = {kMetadata},
       .platforms = {"linux/amd64"}},
      {.type = kEvent, .id = "exchange"},
      {.type = "io.containerd.gc.v1", .id = "scheduler", .dependencies = {kMetadata}},
      {.type = kService, .id = "introspection-service"},
      {.type = kService, .id = "containers-service", .dependencies = {kEvent, kMetadata}},
      {.type = kService, .id = "content-service", .dependencies = {kEvent, kMetadata}},
      {.type = kService, .id = "diff-service", .dependencies = {"io.containerd.differ.v1"}},
      {.type = kService, .id = "images-service",
       .dependencies = {kMetadata, "io.containerd.gc.v1"}},
      {.type = kService, .id = "leases-service", .dependencies = {kMetadata, "io.containerd.gc.v1"}},
      {.type = kService, .id = "namespaces-service", .dependencies = {kEvent, kMetadata}},
      {.type = kService, .id = "snapshots-service",
       .dependencies = {kMetadata, "io.containerd.gc.v1"}},
      {.type = "io.containerd.runtime.v2", .id = "task", .dependencies = {kEvent, kMetadata},
       .platforms = {"linux/amd64"}},
      {.type = kService, .id = "tasks-service",
       .dependencies = {kEvent, "io.containerd.runtime.v2", kMetadata}},
      {.type = kGrpc, .id = "introspection", .dependencies = {kService}},
      {.type = kGrpc, .id = "containers", .dependencies = {kService}},
      {.type = kGrpc, .id = "content", .dependencies = {kService}},
      {.type = kGrpc, .id = "diff", .dependencies = {kService}},
      {.type = kGrpc, .id = "events", .dependencies = {kEvent}},
      {.type = kGrpc, .id = "healthcheck"},
      {.type = kGrpc, .id = "images", .dependencies = {kService}},
      {.type = kGrpc, .id = "leases", .dependencies = {kService}},
      {.type = kGrpc, .id = "namespaces", .dependencies = {kService}},
      {.type = kGrpc, .id = "snapshots", .dependencies = {kService}},
      {.type = kGrpc, .id = "tasks", .dependencies = {kService}},
      {.type = kGrpc, .id = "version"},
  };
}

}  // namespace berth::daemon
