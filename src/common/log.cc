#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace berth {

Status InitLogging(std::string_view level) {
  spdlog::level::level_enum lvl;
  if (level == "trace") {
    lvl = spdlog::level::trace;
  } else if (level == "debug") {
    lvl = spdlog::level::debug;
  } else if (level == "info" || level.empty()) {
    lvl = spdlog::level::info;
  } else if (level == "warn" || level == "warning") {
    lvl = spdlog::level::warn;
  } else if (level == "error") {
    lvl = spdlog::level::err;
  } else if (level == "fatal" || level == "panic") {
    lvl = spdlog::level::critical;
  } else {
    return InvalidArgument("unknown log level " + std::string(level) +
                           " (want trace, debug, info, warn, error, fatal or panic)");
  }
  auto logger = spdlog::stderr_color_mt("berthd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ level=%l %v", spdlog::pattern_time_type::utc);
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

}  // namespace berth
