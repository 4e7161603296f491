// The plugins berthd provides, as Introspection.Plugins reports them: containerd's plugin
// type strings, so `ctr plugins ls` and configs read the same. An explicit list (no static
// registration) — what is here is exactly what is wired in daemon.cc.
#pragma once

#include <vector>

#include "services/basic_services.h"

namespace berth::daemon {

std::vector<services::PluginInfo> ProvidedPlugins();

}  // namespace berth::daemon
