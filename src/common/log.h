// Logging goes through spdlog's default logger (stderr). Lines are key=value where it helps
// grep: `spdlog::debug("rpc method={} ns={}", ...)`.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "common/status.h"

namespace berth {

// Levels as containerd names them: trace, debug, info, warn (or warning), error, fatal, panic.
Status InitLogging(std::string_view level);

}  // namespace berth
