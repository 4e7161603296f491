// TaskService: containerd.task.v2.Task on a ttrpc Server, backed by oci::Container.
//
// Threading: ttrpc handlers run on the ttrpc loop and must not block, but most Task calls
// run the OCI runtime (runc/crun) and wait for it. Those calls go to a small fixed pool of
// worker threads (no thread per call); Wait is answered from the exit callback through its
// Responder; State, Connect and Shutdown are answered on the loop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/empty.pb.h>

#include "common/thread_annotations.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "oci/container.h"
#include "shim/publisher.h"
#include "ttrpc/server.h"

namespace berth::shim {

// Up to `max_threads` threads running queued jobs. Threads start on demand (none while the
// shim only waits) and exit after `idle` without work; when the last one exits, freed heap
// goes back to the kernel (malloc_trim). An idle shim is then one thread and little memory.
class WorkerPool {
 public:
  WorkerPool(int max_threads, std::chrono::milliseconds idle);
  ~WorkerPool();  // finishes queued jobs, waits for every thread to exit
  void Submit(std::function<void()> job);
  int LiveThreadsForTest();

 private:
  void Work();

  const int max_threads_;
  const std::chrono::milliseconds idle_;
  std::mutex mu_;
  std::condition_variable cv_;       // jobs or stop
  std::condition_variable exited_;   // a thread exited
  std::deque<std::function<void()>> jobs_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  int live_ GUARDED_BY(mu_) = 0;
  int waiting_ GUARDED_BY(mu_) = 0;  // threads waiting for a job
};

struct ShimConfig {
  std::string ns;
  std::string id;                // the id the shim was started for
  std::string default_runtime_root;  // runtime --root when Options.root is empty (+ "/<ns>")
};

class TaskService {
 public:
  TaskService(oci::RuntimeEnv* env, ttrpc::EventLoop& loop, ttrpc::Server& server,
              Publisher& publisher, ShimConfig config);
  ~TaskService();

  Status Register();
  // Runs once Shutdown decided the shim should exit (on the loop thread).
  void OnShutdown(std::function<void()> fn) { on_shutdown_ = std::move(fn); }

 private:
  struct Entry;
  template <typename Req, typename Resp>
  Status RegisterWork(const char* method, Result<Resp> (TaskService::*fn)(const Req&));

  Result<std::shared_ptr<Entry>> Get(const std::string& id);
  // On the OCI loop thread: publishes /tasks/exit, then answers that process's waiters.
  void HandleExit(const std::string& id, const std::string& exec_id, const oci::Exit& exit);

  // Handlers run by the worker pool.
  Result<containerd::task::v2::CreateTaskResponse> Create(
      const containerd::task::v2::CreateTaskRequest& req);
  Result<containerd::task::v2::StartResponse> Start(const containerd::task::v2::StartRequest& req);
  Result<containerd::task::v2::DeleteResponse> Delete(
      const containerd::task::v2::DeleteRequest& req);
  Result<containerd::task::v2::PidsResponse> Pids(const containerd::task::v2::PidsRequest& req);
  Result<google::protobuf::Empty> Pause(const containerd::task::v2::PauseRequest& req);
  Result<google::protobuf::Empty> Resume(const containerd::task::v2::ResumeRequest& req);
  Result<google::protobuf::Empty> Kill(const containerd::task::v2::KillRequest& req);
  Result<google::protobuf::Empty> Exec(const containerd::task::v2::ExecProcessRequest& req);
  Result<google::protobuf::Empty> ResizePty(const containerd::task::v2::ResizePtyRequest& req);
  Result<google::protobuf::Empty> CloseIO(const containerd::task::v2::CloseIORequest& req);
  Result<google::protobuf::Empty> Update(const containerd::task::v2::UpdateTaskRequest& req);
  Result<containerd::task::v2::StatsResponse> Stats(const containerd::task::v2::StatsRequest& req);
  // On the loop thread (no runtime calls).
  Result<containerd::task::v2::StateResponse> State(const containerd::task::v2::StateRequest& req);
  Result<containerd::task::v2::ConnectResponse> Connect(
      const containerd::task::v2::ConnectRequest& req);
  Result<google::protobuf::Empty> Shutdown(const containerd::task::v2::ShutdownRequest& req);
  void Wait(const containerd::task::v2::WaitRequest& req,
            ttrpc::TypedResponder<containerd::task::v2::WaitResponse> r);

  oci::RuntimeEnv* const env_;
  ttrpc::EventLoop& loop_;
  ttrpc::Server& server_;
  Publisher& publisher_;
  const ShimConfig config_;
  std::function<void()> on_shutdown_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> containers_ GUARDED_BY(mu_);
  // Last: destroyed (joined) first, so no job runs on a half-destroyed service.
  WorkerPool pool_{3, std::chrono::seconds(1)};
};

}  // namespace berth::shim
