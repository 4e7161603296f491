// Running a shim command (`start`, `delete`): posix_spawn in its own process group with a clean
// signal mask, stdin fed from a buffer, stdout/stderr captured, bounded by a timeout.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace berth::tasks {

struct CommandResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `cwd`, the daemon's environment plus `extra_env` ("K=V"). On
// timeout the process group is killed and DeadlineExceeded returned.
Result<CommandResult> RunCommand(const std::vector<std::string>& argv, const std::string& cwd,
                                 const std::vector<std::string>& extra_env,
                                 const std::string& stdin_data, std::chrono::milliseconds timeout);

}  // namespace berth::tasks
