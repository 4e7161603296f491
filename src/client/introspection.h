// What a daemon says about itself (containerd's client.Version, IntrospectionService): its
// version, its UUID, and its plugins with their exports.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace berth::client {

struct ServerVersion {
  std::string version;
  std::string revision;
  std::string uuid;  // Introspection.Server
};

Result<ServerVersion> GetServerVersion(const Client& client);

struct PluginInfo {
  std::string type;  // "io.containerd.snapshotter.v1"
  std::string id;    // "overlayfs"
  std::vector<std::string> requires_types;
  std::vector<std::string> platforms;  // "linux/amd64"
  std::map<std::string, std::string> exports;
  std::vector<std::string> capabilities;
  std::string init_error;  // "" when the plugin loaded ("ok" in ctr's STATUS column)
};

// Introspection.Plugins with containerd filters ("type==io.containerd.snapshotter.v1", ...).
Result<std::vector<PluginInfo>> ListPlugins(const Client& client,
                                            const std::vector<std::string>& filters = {});

// A daemon's layout as far as its plugins' exports tell: the root is the parent of the content
// store's "root" export (containerd's <root>/io.containerd.content.v1.content, berthd's
// <root>/content), the state the parent of the runtime's "state" export. "" when unknown.
struct DaemonDirs {
  std::string root;
  std::string state;
};
DaemonDirs DirsFromPlugins(const std::vector<PluginInfo>& plugins);

}  // namespace berth::client
