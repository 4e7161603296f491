// gRPC adapter for containerd.services.tasks.v1.Tasks over a tasks::Runtime: each call is the
// matching containerd.task.v2.Task call on the task, today its shim (containerd-compat.md §2.10).
// Task events (/tasks/create, /tasks/start, /tasks/exit, /tasks/delete, ...) are published by
// the shim itself through the ttrpc events socket; only a shim that dies is reported here (by
// the manager).
//
// Wait is gRPC's callback API (a ServerUnaryReactor): it registers a waiter on the task
// (tasks::Task::AddWaiter; a shim shares one Task.Wait ttrpc call per process) and returns at
// once, so no gRPC thread is held; the answer is sent when the task reports the exit. A client
// that cancels gets CANCELLED immediately and its waiter is dropped. Checkpoint is
// Unimplemented.
#pragma once

#include "events/exchange.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "metadata/container_store.h"
#include "tasks/runtime.h"

namespace berth::services {

namespace tv1 = containerd::services::tasks::v1;

class TasksService final : public tv1::Tasks::WithCallbackMethod_Wait<tv1::Tasks::Service> {
 public:
  TasksService(tasks::Runtime& runtime, metadata::ContainerStore& containers)
      : runtime_(runtime), containers_(containers) {}

  grpc::Status Create(grpc::ServerContext*, const tv1::CreateTaskRequest*,
                      tv1::CreateTaskResponse*) override;
  grpc::Status Start(grpc::ServerContext*, const tv1::StartRequest*, tv1::StartResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const tv1::DeleteTaskRequest*,
                      tv1::DeleteResponse*) override;
  grpc::Status DeleteProcess(grpc::ServerContext*, const tv1::DeleteProcessRequest*,
                             tv1::DeleteResponse*) override;
  grpc::Status Get(grpc::ServerContext*, const tv1::GetRequest*, tv1::GetResponse*) override;
  grpc::Status List(grpc::ServerContext*, const tv1::ListTasksRequest*,
                    tv1::ListTasksResponse*) override;
  grpc::Status Kill(grpc::ServerContext*, const tv1::KillRequest*,
                    google::protobuf::Empty*) override;
  grpc::Status Exec(grpc::ServerContext*, const tv1::ExecProcessRequest*,
                    google::protobuf::Empty*) override;
  grpc::Status ResizePty(grpc::ServerContext*, const tv1::ResizePtyRequest*,
                         google::protobuf::Empty*) override;
  grpc::Status CloseIO(grpc::ServerContext*, const tv1::CloseIORequest*,
                       google::protobuf::Empty*) override;
  grpc::Status Pause(grpc::ServerContext*, const tv1::PauseTaskRequest*,
                     google::protobuf::Empty*) override;
  grpc::Status Resume(grpc::ServerContext*, const tv1::ResumeTaskRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status ListPids(grpc::ServerContext*, const tv1::ListPidsRequest*,
                        tv1::ListPidsResponse*) override;
  grpc::Status Checkpoint(grpc::ServerContext*, const tv1::CheckpointTaskRequest*,
                          tv1::CheckpointTaskResponse*) override;
  grpc::Status Update(grpc::ServerContext*, const tv1::UpdateTaskRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Metrics(grpc::ServerContext*, const tv1::MetricsRequest*,
                       tv1::MetricsResponse*) override;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext*, const tv1::WaitRequest*,
                                 tv1::WaitResponse*) override;

 private:
  // Handle() for a call on one task: the namespace, then task `id` in it (NotFound if none).
  template <typename F>
  grpc::Status WithTask(const char* method, grpc::ServerContext* ctx, const std::string& id,
                        F&& body);

  tasks::Runtime& runtime_;
  metadata::ContainerStore& containers_;
};

}  // namespace berth::services
