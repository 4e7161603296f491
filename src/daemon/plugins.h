// The plugins berthd provides, as Introspection.Plugins reports them: containerd's plugin
// type strings, so `ctr plugins ls` and configs read the same. An explicit list (no static
// registration) — what is here is exactly what is wired in daemon.cc.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "services/basic_services.h"

namespace berth::daemon {

std::vector<services::PluginInfo> ProvidedPlugins();

// Where the plugins keep their data, as exports (what `berth info` and `ctr plugins ls -d`
// show): "root" of the content store and of each snapshotter (containerd exports the same
// key), and for the runtime plugin its "root", "state" and "runtimes" (the runtime names it
// serves, comma-separated: ours plus `runtime_binaries`).
void AddPluginExports(std::vector<services::PluginInfo>& plugins, const std::string& root,
                      const std::string& state,
                      const std::map<std::string, std::string>& runtime_binaries);

}  // namespace berth::daemon
