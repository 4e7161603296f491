#include "daemon/plugins.h"

#include <set>

#include "tasks/shim_manager.h"

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

void AddPluginExports(std::vector<services::PluginInfo>& plugins, const std::string& root,
                      const std::string& state,
                      const std::map<std::string, std::string>& runtime_binaries) {
  std::set<std::string> runtimes(std::begin(tasks::kOwnShimRuntimes),
                                 std::end(tasks::kOwnShimRuntimes));
  for (const auto& [name, binary] : runtime_binaries) runtimes.insert(name);
  std::string runtime_list;
  for (const auto& r : runtimes) runtime_list += (runtime_list.empty() ? "" : ",") + r;
  // The directories daemon.cc opens these plugins on.
  for (auto& p : plugins) {
    if (p.type == "io.containerd.content.v1") {
      p.exports["root"] = root + "/content";
    } else if (p.type == "io.containerd.snapshotter.v1") {
      p.exports["root"] = root + "/snapshots/" + p.id;
    } else if (p.type == "io.containerd.runtime.v2") {
      p.exports["root"] = root + "/" + tasks::kRuntimePluginDir;
      p.exports["state"] = state + "/" + tasks::kRuntimePluginDir;
      p.exports["runtimes"] = runtime_list;
    }
  }
}

}  // namespace berth::daemon
