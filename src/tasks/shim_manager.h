// The daemon side of containerd's runtime v2: one shim process per task, driven over ttrpc
// (containerd.task.v2.Task). Facts: docs/containerd-compat.md §7.
//
// Create builds the bundle (§7.2: <state>/io.containerd.runtime.v2.task/<ns>/<id> with
// config.json, rootfs/, a `log` FIFO we read into our log, work -> <root>/...), runs
// `<shim> ... start` (own process group, TTRPC_ADDRESS in its environment, the runtime options
// Any on stdin), dials the printed address, writes shim-binary-path and calls Task.Create and
// Task.Connect. Every failure undoes what was done (shim delete command, bundle removed).
//
// Shims outlive the daemon: the `start` command's server child is re-parented to init in its
// own process group, so a crash of berthd never takes containers down. Recover() reconnects to
// them at the next start (§7.8); dead ones get their `delete` command, /tasks/exit and
// /tasks/delete, and lose their bundle.
//
// When a shim's connection closes while its task is still registered (the shim died), the
// manager runs its `delete` command, publishes /tasks/exit and /tasks/delete and forgets the
// task, as containerd does. Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "events/exchange.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "tasks/runtime.h"
#include "ttrpc/client.h"
#include "ttrpc/event_loop.h"

namespace berth::tasks {

inline constexpr char kTaskService[] = "containerd.task.v2.Task";
inline constexpr char kRuntimePluginDir[] = "io.containerd.runtime.v2.task";

struct ManagerConfig {
  std::string state_dir;      // <state>/io.containerd.runtime.v2.task
  std::string work_dir;       // <root>/io.containerd.runtime.v2.task
  std::string grpc_address;   // passed as -address
  std::string ttrpc_address;  // TTRPC_ADDRESS for shims
  std::string publish_binary; // -publish-binary (our own executable)
  // BERTH_SHIM_RUN_DIR for shims: our shim keeps its sockets in <dir>/s and its default
  // runtime root in <dir>/runc (berthd passes its state dir). "" = not set.
  std::string shim_run_dir;
  // Runtime name → shim binary, from the config file; wins over name-based resolution.
  std::map<std::string, std::string> binaries;
};

// Our shim, and the runtime names it serves unless the config maps them elsewhere. containerd
// 1.6 still serves runtime v1 (`io.containerd.runtime.v1.linux`, containerd-shim driving runc
// with containerd.linux.runc.RuncOptions); we serve it through our v2 shim, which reads those
// options.
inline constexpr char kOwnShimName[] = "containerd-shim-berth-v2";
inline constexpr const char* kOwnShimRuntimes[] = {"io.containerd.runc.v2",
                                                    "io.containerd.berth.v2", kRuntimeV1Linux};

// AnyBytes and CreateOptions: tasks/runtime.h.

// One connected shim serving one task.
class Shim : public Task, public std::enable_shared_from_this<Shim> {
 public:
  const std::string& ns() const override { return ns_; }
  const std::string& id() const override { return id_; }
  const std::string& bundle() const { return bundle_; }
  const std::string& runtime() const override { return runtime_; }
  uint32_t pid() const override { return pid_; }

  // A containerd.task.v2.Task call with the namespace in the ttrpc metadata.
  Status Call(std::string_view method, const google::protobuf::MessageLite& req,
              google::protobuf::MessageLite* resp,
              std::optional<std::chrono::nanoseconds> timeout = std::nullopt) override;
  void CallAsync(std::string_view method, const google::protobuf::MessageLite& req,
                 std::function<void(Result<std::string>)> done);

  // Waits for process `exec_id` ("" = the task's init) to exit without holding a thread:
  // `done` runs once, with the shim's serialized WaitResponse or the call's error, on the
  // manager's loop thread (or on this thread if the call cannot be sent). Every waiter of one
  // process shares one Task.Wait call to the shim. Returns a token for CancelWait.
  uint64_t AddWaiter(const std::string& exec_id, WaitDone done) override;
  // Forgets a waiter: its `done` will not run (unless it is running already). The shared
  // Task.Wait call stays in flight (ttrpc cannot cancel it) and ends with the process.
  void CancelWait(uint64_t token) override;

 private:
  friend class Manager;
  void FinishWaits(const std::string& exec_id, Result<std::string> result);

  std::string ns_, id_, bundle_, runtime_, binary_;
  uint32_t pid_ = 0;
  std::unique_ptr<ttrpc::Client> client_;
  int log_fd_ = -1;              // the `log` FIFO, read end; owned, watched on the loop
  std::atomic<bool> deleting_{false};  // Delete in progress: a disconnect is expected

  std::mutex wait_mu_;
  uint64_t next_waiter_ GUARDED_BY(wait_mu_) = 1;
  std::map<std::string, std::map<uint64_t, WaitDone>> waits_ GUARDED_BY(wait_mu_);
  std::map<uint64_t, std::string> waiter_exec_ GUARDED_BY(wait_mu_);
};

class Manager {
 public:
  static Result<std::unique_ptr<Manager>> Create(ManagerConfig cfg, events::Exchange& exchange);
  // Closes the shim connections; the shims and their containers keep running.
  ~Manager();

  Result<std::shared_ptr<Shim>> CreateTask(const CreateOptions& opts);
  // NotFound "no running task found: task <id> not found" when unknown.
  Result<std::shared_ptr<Shim>> Get(const std::string& ns, const std::string& id) const;
  std::vector<std::shared_ptr<Shim>> List(const std::string& ns) const;  // "" = all
  // Task.Delete, Shutdown, close, bundle removed; the task is forgotten.
  Result<containerd::task::v2::DeleteResponse> Delete(const std::string& ns,
                                                       const std::string& id);

  // §7.8: reconnects live shims found in the state dir, up to 16 bundles at once (a hung shim
  // costs its own Connect timeout, not everyone's). `container_exists(ns, id)` tells whether
  // the task's container record is still there (called from several threads); a live task
  // without one is killed and deleted. Dead or hung shims: `delete` command, /tasks/exit +
  // /tasks/delete, bundle removed. Bundles without `address` or `shim-binary-path` (a create
  // cut short) get the `delete` command and are removed; so are leftover dot-dirs of an
  // interrupted removal and work dirs without a bundle. Nothing mounted is ever removed.
  void Recover(const std::function<bool(const std::string&, const std::string&)>& container_exists);

  // Resolves a runtime name to a shim binary: the config's [runtimes] entry; for
  // io.containerd.runc.v2 and io.containerd.berth.v2 our containerd-shim-berth-v2 next to
  // berthd, then in $PATH; otherwise containerd's rule (§7.1: io.containerd.<name>.<version> →
  // containerd-shim-<name>-<version> in $PATH, then next to berthd). NotFound when nothing
  // matches.
  Result<std::string> ResolveBinary(const std::string& runtime);

 private:
  Manager(ManagerConfig cfg, events::Exchange& exchange, std::unique_ptr<ttrpc::LoopThread> loop)
      : cfg_(std::move(cfg)), exchange_(exchange), loop_(std::move(loop)) {}

  Status Connect(const std::shared_ptr<Shim>& shim, const std::string& address);
  void WatchLog(const std::shared_ptr<Shim>& shim, int fd);
  void OnDisconnect(std::weak_ptr<Shim> shim);
  void CleanupDead(const std::shared_ptr<Shim>& shim);
  // The shim's `delete` command; its DeleteResponse when it printed one.
  Result<containerd::task::v2::DeleteResponse> RunDeleteCommand(const std::string& binary,
                                                                const std::string& ns,
                                                                const std::string& id,
                                                                const std::string& bundle);
  void RemoveBundle(const std::string& ns, const std::string& id);
  // remove_all of `dir`, unless something is mounted at or below it (then logged, kept).
  void RemoveTree(const std::string& dir);
  void RecoverOne(const std::string& ns, const std::string& id,
                  const std::function<bool(const std::string&, const std::string&)>& exists);
  // The environment of shim commands: TTRPC_ADDRESS, BERTH_SHIM_RUN_DIR.
  std::vector<std::string> ShimEnv() const;
  void CloseShim(const std::shared_ptr<Shim>& shim);
  void PublishExitDelete(const std::string& ns, const std::string& id, uint32_t pid,
                         uint32_t exit_status, const google::protobuf::Timestamp& exited_at);

  ManagerConfig cfg_;
  events::Exchange& exchange_;
  std::unique_ptr<ttrpc::LoopThread> loop_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Shim>> tasks_ GUARDED_BY(mu_);
  std::map<std::string, std::string> resolved_ GUARDED_BY(mu_);
  std::vector<std::thread> cleanups_ GUARDED_BY(mu_);
  std::atomic<bool> stopping_{false};
};

}  // namespace berth::tasks
