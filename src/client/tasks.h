// Tasks and processes from the client side (containerd's client Task / Process): create a
// container's task with its stdio on FIFOs (task_io.h), start, wait, signal, exec, delete —
// plus the two flows `ctr run`/`ctr tasks start` and `ctr tasks exec` share: run a process in
// the foreground (stdio copied, signals forwarded, exit status returned) and remove a task.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/client.h"
#include "client/containers.h"
#include "client/task_io.h"
#include "common/status.h"
#include "github.com/containerd/containerd/api/types/task/task.pb.h"

namespace berth::client {

using Process = containerd::v1::types::Process;
using TaskStatus = containerd::v1::types::Status;

// A process of a task: the container's init process (exec_id "") or an exec.
struct ProcessRef {
  std::string id;  // container ID
  std::string exec_id;
};

// "RUNNING", "STOPPED", ... ("UNKNOWN" for values we do not know).
std::string TaskStatusName(TaskStatus st);

// An exec ID no one else picks: "exec-" + 12 random hex digits.
std::string RandomExecId();

// The FIFOs of a process as the Tasks service reports them.
FifoPaths FifoPathsOf(const Process& p);

Result<Process> GetProcess(const Client& client, const ProcessRef& p);
Result<std::vector<Process>> ListTasks(const Client& client);
Result<std::vector<uint32_t>> ListPids(const Client& client, const std::string& id);

// Creates the task of `c` (its rootfs mounts from its snapshot, if it has one) with stdio on
// `fifos`. Returns the init process's pid.
Result<uint32_t> CreateTask(const Client& client, const Container& c, const FifoPaths& fifos);
// Adds exec process `p` running `process` (an OCI process JSON object) with stdio on `fifos`.
Status Exec(const Client& client, const ProcessRef& p, const nlohmann::json& process,
            const FifoPaths& fifos);
Status Start(const Client& client, const ProcessRef& p);
Status Kill(const Client& client, const ProcessRef& p, int sig, bool all = false);
Status Pause(const Client& client, const std::string& id);
Status Resume(const Client& client, const std::string& id);
// Waits (no deadline) for `p` to exit; returns its exit status.
Result<uint32_t> Wait(const Client& client, const ProcessRef& p);
// Deletes the task of `id` (DeleteTask) or an exec process (DeleteProcess); returns the exit
// status.
Result<uint32_t> Delete(const Client& client, const ProcessRef& p);
// Closes the process's stdin (after our stdin ended). Best effort.
void CloseStdin(const Client& client, const ProcessRef& p);
// Sizes the process's pty as our terminal (no-op without one). Best effort.
void ResizeToTerminal(const Client& client, const ProcessRef& p);

// The process spec of an exec in container `c`: its init process with `args`, `tty`, `cwd`
// (when set), `env` merged in (MergeEnv) and `user` ("uid[:gid]", numeric only).
// FailedPrecondition when the container has no OCI process; InvalidArgument for a bad user.
struct ExecOptions {
  std::vector<std::string> args;
  bool tty = false;
  std::string cwd;
  std::vector<std::string> env;
  std::string user;
};
Result<nlohmann::json> ExecProcessSpec(const Container& c, const ExecOptions& o);

// The signals a foreground process gets from us (ctr's --sig-proxy).
const std::vector<int>& ForwardedSignals();

// Passes the signals we receive to the process it targets (SIGWINCH resizes its pty). Create it
// before anything opens a gRPC channel: the signals are then blocked in gRPC's threads too and
// reach only the catcher's thread. With no target, a forwarded signal ends us as if uncaught.
class SignalForwarder {
 public:
  // `on_error` gets the failures to forward a signal (printing is the caller's business).
  explicit SignalForwarder(std::function<void(const Status&)> on_error);
  ~SignalForwarder();
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

  // Forwards to `p` from now on; nullptr client: to no one.
  void Target(const Client* client, ProcessRef p, bool tty);

 private:
  std::mutex mu_;
  const Client* client_ = nullptr;  // guarded by mu_
  ProcessRef target_;               // guarded by mu_
  bool tty_ = false;                // guarded by mu_
  std::function<void(const Status&)> on_error_;
  std::unique_ptr<SignalCatcher> catcher_;
};

// How a task runs in the foreground or detached (ctr run / ctr tasks start).
struct RunTaskOptions {
  bool detach = false;    // start it and return (the FIFOs stay for attach)
  bool remove = false;    // delete the container once the task is gone (--rm)
  std::string fifo_root;  // where the FIFO directory goes
  // Reports failures of the cleanup that do not change the result.
  std::function<void(const Status&)> warn;
};

// Creates, starts and — unless detached — waits for the task of `c`, with our stdio copied to
// and from it and signals forwarded by `forwarder`; then deletes the task (and with `remove`
// the container). Returns the exit status (0 when detached).
Result<uint32_t> RunTask(const Client& client, SignalForwarder& forwarder, const Container& c,
                         const RunTaskOptions& o);

// Starts exec process `p` (already created with Exec on `fifos`, its stdio opened by `io`),
// waits for it, drains its output. Returns the exit status.
Result<uint32_t> StartAndWait(const Client& client, const ProcessRef& p, const FifoPaths& fifos,
                              IoCopier& io, bool interactive_tty);

// Deletes the task of `id` (killing it first with `force`) and its FIFOs. NotFound when it has
// none; FailedPrecondition when it runs and !force. Returns its exit status.
Result<uint32_t> RemoveTask(const Client& client, const std::string& id, bool force);

}  // namespace berth::client
