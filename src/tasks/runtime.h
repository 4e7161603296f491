// The task runtime as the Tasks service sees it (containerd: core/runtime PlatformRuntime and
// Task). Today's implementation is runtime v2, one shim process per task (tasks/shim_manager.h,
// exposed as a Runtime by tasks/shim_runtime.h); a second one (e.g. the v1 linux runtime) plugs
// in here without the service changing.
//
// A Task speaks the containerd.task.v2.Task protocol: Call("Start", StartRequest, &resp) and so
// on, with the task's namespace attached by the implementation. Errors keep the codes the task
// answered with (NotFound for an unknown process, FailedPrecondition for a wrong state, ...).
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"

namespace berth::tasks {

// containerd 1.6's runtime v1 name: its container options (containerd.linux.runc.RuncOptions)
// go to the shim's start and the request's options to Task.Create (see CreateOptions).
inline constexpr char kRuntimeV1Linux[] = "io.containerd.runtime.v1.linux";

struct AnyBytes {
  std::string type_url;
  std::string value;
};

struct CreateOptions {
  std::string ns;
  std::string id;
  std::string runtime;              // runtime name or absolute shim path
  std::string spec;                 // config.json bytes
  std::optional<AnyBytes> options;  // runtime options (shim stdin and Task.Create options)
  // Set for runtime v1: `start` gets these (the container's RuncOptions) on stdin and
  // Task.Create gets `options` (the request's CreateOptions) — containerd's v1 split.
  std::optional<AnyBytes> start_options;
  std::vector<containerd::types::Mount> rootfs;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
};

// One running task. Thread-safe.
class Task {
 public:
  virtual ~Task() = default;

  virtual const std::string& ns() const = 0;
  virtual const std::string& id() const = 0;
  virtual const std::string& runtime() const = 0;  // the runtime name it was created with
  virtual uint32_t pid() const = 0;                // the init process

  // One containerd.task.v2.Task call: `method` names it ("Start", "Kill", ...), `req`/`resp`
  // are its messages. `timeout` bounds the wait for the answer (none: wait for it).
  virtual Status Call(std::string_view method, const google::protobuf::MessageLite& req,
                      google::protobuf::MessageLite* resp,
                      std::optional<std::chrono::nanoseconds> timeout = std::nullopt) = 0;

  // Waits for process `exec_id` ("" = the init process) to exit without holding a thread:
  // `done` runs once, with the serialized containerd.task.v2.WaitResponse or the error, on a
  // thread of the implementation's choosing. Returns a token for CancelWait.
  using WaitDone = std::function<void(Result<std::string>)>;
  virtual uint64_t AddWaiter(const std::string& exec_id, WaitDone done) = 0;
  // Forgets a waiter: its `done` will not run (unless it is running already).
  virtual void CancelWait(uint64_t token) = 0;
};

// Creates, finds and deletes tasks. Thread-safe.
class Runtime {
 public:
  virtual ~Runtime() = default;

  // Starts the task's runtime and creates the task (not started). Every failure undoes what
  // was done. Errors: AlreadyExists, NotFound (runtime), the runtime's own errors.
  virtual Result<std::shared_ptr<Task>> Create(const CreateOptions& opts) = 0;
  // NotFound "no running task found: task <id> not found" when unknown.
  virtual Result<std::shared_ptr<Task>> Get(const std::string& ns,
                                            const std::string& id) const = 0;
  // The tasks of namespace `ns` ("" = every namespace).
  virtual std::vector<std::shared_ptr<Task>> List(const std::string& ns) const = 0;
  // Deletes the task's init process and the task; it is forgotten afterwards.
  virtual Result<containerd::task::v2::DeleteResponse> Delete(const std::string& ns,
                                                               const std::string& id) = 0;
};

}  // namespace berth::tasks
