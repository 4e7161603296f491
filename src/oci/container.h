// Container: one OCI container and its processes, shaped like containerd's task API so the
// shim's ttrpc Task service is a thin translation layer:
//
//   Task RPC        → Container method
//   Create          → Container::Create (runtime create, stdio, init pid, OOM watch)
//   Start           → Start(exec_id)          ("" = init: runtime start; else runtime exec)
//   Delete          → Delete(exec_id)
//   Pids            → Pids()
//   Pause / Resume  → Pause() / Resume()
//   Kill            → Kill(exec_id, signal, all)
//   Exec            → Exec(exec_id, process_json, stdio)   (registers; Start runs it)
//   ResizePty       → ResizePty(exec_id, width, height)
//   CloseIO         → CloseIO(exec_id)
//   Update          → Update(resources_json)
//   Wait            → Wait(exec_id)
//   Stats           → Stats()                 (cgroup counters; the shim builds Metrics)
//   State           → State(exec_id)
// Events the shim publishes come from ContainerEvents: on_exit → /tasks/exit, on_oom →
// /tasks/oom. The rest (/tasks/create, start, ...) follow the shim's own successful calls.
//
// Process states follow containerd's pkg/process: created → running ⇄ paused → stopped →
// deleted. Exec ids are identifiers (they name pid files in the bundle).
//
// Thread-safe. Calls that run the OCI runtime block for as long as it runs; they are
// serialised per process, not per container, so Kill or State never waits behind a slow Exec.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "oci/cgroup.h"
#include "oci/event_loop.h"
#include "oci/oci_runtime.h"
#include "oci/process_io.h"
#include "oci/reaper.h"

namespace berth::oci {

// The process-wide pieces all containers of a shim share: the event loop thread, the reaper,
// the host's cgroup layout. Create it first thing in main(), before other threads exist (the
// reaper blocks SIGCHLD in the calling thread; see reaper.h). One per process.
class RuntimeEnv {
 public:
  // With `loop` null the core runs a loop thread of its own; otherwise it works on `loop`,
  // which the caller runs on a thread created after this call (or on this thread) and which
  // must outlive the env.
  static Result<std::unique_ptr<RuntimeEnv>> Create(berth::EventLoop* loop = nullptr);
  ~RuntimeEnv();

  EventLoop* loop() const { return loop_.get(); }
  Reaper* reaper() const { return reaper_.get(); }
  const CgroupLayout& cgroups() const { return cgroups_; }

 private:
  RuntimeEnv() = default;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Reaper> reaper_;
  CgroupLayout cgroups_;
};

enum class ProcessStatus { kCreated, kRunning, kPaused, kStopped, kDeleted };
// containerd's names: "created", "running", "paused", "stopped", "deleted".
std::string_view ProcessStatusName(ProcessStatus status);

struct ProcessState {
  std::string exec_id;  // "" = init
  pid_t pid = 0;
  ProcessStatus status = ProcessStatus::kCreated;
  StdioSpec stdio;
  int exit_status = 0;                              // valid when stopped
  std::chrono::system_clock::time_point exited_at;  // epoch until stopped
};

// A pid in the container and, if it is an exec's main process, that exec's id.
struct ProcessInfo {
  pid_t pid = 0;
  std::string exec_id;
};

struct ContainerConfig {
  std::string id;      // the runtime's container id (an identifier)
  std::string bundle;  // absolute; holds config.json and rootfs, gets init.pid and <exec>.pid
  std::string ns;      // containerd namespace (for logging binaries)
  StdioSpec stdio;
  bool no_pivot = false;
  bool no_new_keyring = false;
  uid_t io_uid = static_cast<uid_t>(-1);  // owner of the stdio pipes; -1 = ours (IoOptions)
  gid_t io_gid = static_cast<gid_t>(-1);
};

// Callbacks run on the event loop thread: they must not block or call back into the
// Container's runtime-running methods (post the work elsewhere instead).
struct ContainerEvents {
  std::function<void(const std::string& exec_id, const Exit& exit)> on_exit;
  std::function<void()> on_oom;
};

class Container {
 public:
  // Opens stdio, runs `runtime create`, reads init.pid, starts watching the init exit and the
  // memory cgroup. On error nothing is left behind (the runtime container is force-deleted).
  static Result<std::unique_ptr<Container>> Create(RuntimeEnv* env,
                                                   std::shared_ptr<OciRuntime> runtime,
                                                   ContainerConfig config,
                                                   ContainerEvents events = {});
  // A container not deleted by then is killed and force-deleted; no callback runs afterwards.
  ~Container();

  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& id() const { return config_.id; }
  const std::string& bundle() const { return config_.bundle; }
  pid_t pid() const;  // init pid
  OciRuntime& runtime() const { return *runtime_; }

  // Starts init ("") or a registered exec. Returns its pid. FailedPrecondition if not created.
  Result<pid_t> Start(const std::string& exec_id);
  // Removes a process that is stopped (or never started). For init, also `runtime delete` and
  // closes stdio after at most 2 s of draining (as containerd). FailedPrecondition if running.
  Result<Exit> Delete(const std::string& exec_id);
  Result<std::vector<ProcessInfo>> Pids();
  Status Pause();
  Status Resume();
  // Init: `runtime kill [--all]`. Exec: kill(2) of its pid. NotFound if the process is gone,
  // FailedPrecondition if an exec was never started.
  Status Kill(const std::string& exec_id, int signal, bool all);
  // Registers an exec; `process_json` is an OCI "process" (its "terminal" is set from stdio).
  // AlreadyExists for a used id.
  Status Exec(const std::string& exec_id, const std::string& process_json, const StdioSpec& stdio);
  Status ResizePty(const std::string& exec_id, uint16_t width, uint16_t height);
  // Closes stdin of the process (CloseIO with stdin=true).
  Status CloseIO(const std::string& exec_id);
  Status Update(const std::string& resources_json);
  // Blocks until the process exits (or `timeout`: DeadlineExceeded).
  Result<Exit> Wait(const std::string& exec_id,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  Result<CgroupStats> Stats();
  Result<ProcessState> State(const std::string& exec_id);
  // Where the container's cgroup is (resolved once from the init pid at create).
  const CgroupPaths& cgroup() const { return cgroup_; }

 private:
  struct Process;
  struct Shared;
  Container(RuntimeEnv* env, std::shared_ptr<OciRuntime> runtime, ContainerConfig config);
  Result<std::shared_ptr<Process>> Find(const std::string& exec_id);
  void WatchExit(const std::shared_ptr<Process>& p);
  Result<pid_t> StartExec(const std::shared_ptr<Process>& p);
  void ForceCleanup();

  RuntimeEnv* const env_;
  const std::shared_ptr<OciRuntime> runtime_;
  const ContainerConfig config_;
  std::shared_ptr<Shared> shared_;
  CgroupPaths cgroup_;
  std::unique_ptr<OomWatcher> oom_;
  bool own_pid_namespace_ = true;

  std::mutex mu_;
  std::shared_ptr<Process> init_;
  std::map<std::string, std::shared_ptr<Process>> execs_ GUARDED_BY(mu_);
};

}  // namespace berth::oci
