#include "services/tasks_service.h"

#include <chrono>
#include <memory>
#include <mutex>

#include "common/filters.h"
#include "common/log.h"
#include "common/thread_annotations.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace task = containerd::task::v2;
namespace types = containerd::v1::types;
namespace {

constexpr auto kStateTimeout = std::chrono::seconds(2);

// A process's state as containerd's getProcessState reports it.
Status ProcessState(tasks::Task& t, const std::string& exec_id, types::Process* out) {
  task::StateRequest req;
  req.set_id(t.id());
  req.set_exec_id(exec_id);
  task::StateResponse st;
  Status s = t.Call("State", req, &st, kStateTimeout);
  if (!s.ok()) {
    if (s.code() == Code::kNotFound) return s;
    spdlog::error("get state for {}: {}", exec_id.empty() ? t.id() : exec_id, s.ToString());
  }
  out->set_id(exec_id.empty() ? t.id() : exec_id);
  out->set_pid(st.pid());
  out->set_status(st.status());
  out->set_stdin(st.stdin());
  out->set_stdout(st.stdout());
  out->set_stderr(st.stderr());
  out->set_terminal(st.terminal());
  out->set_exit_status(st.exit_status());
  *out->mutable_exited_at() = st.exited_at();
  return Status::Ok();
}

}  // namespace

template <typename F>
grpc::Status TasksService::WithTask(const char* method, grpc::ServerContext* ctx,
                                    const std::string& id, F&& body) {
  return Handle(method, ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(std::shared_ptr<tasks::Task> t, runtime_.Get(c.ns, id));
    return body(*t);
  });
}

grpc::Status TasksService::Create(grpc::ServerContext* ctx, const tv1::CreateTaskRequest* req,
                                  tv1::CreateTaskResponse* resp) {
  return Handle("Tasks.Create", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(metadata::Container container, containers_.Get(c.ns, req->container_id()));
    if (req->has_checkpoint() && !req->checkpoint().digest().empty()) {
      return Unimplemented("checkpoint restore is not supported");
    }
    tasks::CreateOptions o;
    o.ns = c.ns;
    o.id = container.id;
    o.runtime = req->runtime_path().empty() ? container.runtime_name : req->runtime_path();
    if (container.spec) o.spec = container.spec->value;
    if (req->has_options()) {
      o.options = tasks::AnyBytes{req->options().type_url(), req->options().value()};
    } else if (container.runtime_options && o.runtime != tasks::kRuntimeV1Linux) {
      o.options = tasks::AnyBytes{container.runtime_options->type_url,
                                  container.runtime_options->value};
    }
    if (container.runtime_options && o.runtime == tasks::kRuntimeV1Linux) {
      o.start_options = tasks::AnyBytes{container.runtime_options->type_url,
                                        container.runtime_options->value};
    }
    o.rootfs.assign(req->rootfs().begin(), req->rootfs().end());
    o.stdin_path = req->stdin();
    o.stdout_path = req->stdout();
    o.stderr_path = req->stderr();
    o.terminal = req->terminal();
    ASSIGN_OR_RETURN(std::shared_ptr<tasks::Task> t, runtime_.Create(o));
    resp->set_container_id(container.id);
    resp->set_pid(t->pid());
    return Status::Ok();
  });
}

grpc::Status TasksService::Start(grpc::ServerContext* ctx, const tv1::StartRequest* req,
                                 tv1::StartResponse* resp) {
  return WithTask("Tasks.Start", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::StartRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    task::StartResponse out;
    RETURN_IF_ERROR(t.Call("Start", r, &out));
    resp->set_pid(out.pid());
    return Status::Ok();
  });
}

grpc::Status TasksService::Delete(grpc::ServerContext* ctx, const tv1::DeleteTaskRequest* req,
                                  tv1::DeleteResponse* resp) {
  return Handle("Tasks.Delete", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(task::DeleteResponse d, runtime_.Delete(c.ns, req->container_id()));
    resp->set_pid(d.pid());
    resp->set_exit_status(d.exit_status());
    *resp->mutable_exited_at() = d.exited_at();
    return Status::Ok();
  });
}

grpc::Status TasksService::DeleteProcess(grpc::ServerContext* ctx,
                                         const tv1::DeleteProcessRequest* req,
                                         tv1::DeleteResponse* resp) {
  return WithTask("Tasks.DeleteProcess", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::DeleteRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    task::DeleteResponse out;
    RETURN_IF_ERROR(t.Call("Delete", r, &out));
    resp->set_id(req->exec_id());
    resp->set_pid(out.pid());
    resp->set_exit_status(out.exit_status());
    *resp->mutable_exited_at() = out.exited_at();
    return Status::Ok();
  });
}

grpc::Status TasksService::Get(grpc::ServerContext* ctx, const tv1::GetRequest* req,
                               tv1::GetResponse* resp) {
  return WithTask("Tasks.Get", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    return ProcessState(t, req->exec_id(), resp->mutable_process());
  });
}

grpc::Status TasksService::List(grpc::ServerContext* ctx, const tv1::ListTasksRequest*,
                                tv1::ListTasksResponse* resp) {
  return Handle("Tasks.List", ctx, [&](const CallCtx& c) -> Status {
    for (const auto& t : runtime_.List(c.ns)) {
      types::Process p;
      // A task deleted meanwhile is simply not listed.
      if (ProcessState(*t, "", &p).ok()) *resp->add_tasks() = std::move(p);
    }
    return Status::Ok();
  });
}

grpc::Status TasksService::Kill(grpc::ServerContext* ctx, const tv1::KillRequest* req,
                                google::protobuf::Empty*) {
  return WithTask("Tasks.Kill", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::KillRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_signal(req->signal());
    r.set_all(req->all());
    google::protobuf::Empty out;
    return t.Call("Kill", r, &out);
  });
}

grpc::Status TasksService::Exec(grpc::ServerContext* ctx, const tv1::ExecProcessRequest* req,
                                google::protobuf::Empty*) {
  return HandleNoNamespace("Tasks.Exec", [&]() -> Status {
    // The exec id is checked before the namespace, as containerd does.
    if (req->exec_id().empty()) return InvalidArgument("exec id cannot be empty");
    ASSIGN_OR_RETURN(CallCtx c, RequireCallCtx(ctx));
    ASSIGN_OR_RETURN(std::shared_ptr<tasks::Task> t, runtime_.Get(c.ns, req->container_id()));
    task::ExecProcessRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_terminal(req->terminal());
    r.set_stdin(req->stdin());
    r.set_stdout(req->stdout());
    r.set_stderr(req->stderr());
    if (req->has_spec()) *r.mutable_spec() = req->spec();
    google::protobuf::Empty out;
    return t->Call("Exec", r, &out);
  });
}

grpc::Status TasksService::ResizePty(grpc::ServerContext* ctx, const tv1::ResizePtyRequest* req,
                                     google::protobuf::Empty*) {
  return WithTask("Tasks.ResizePty", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::ResizePtyRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_width(req->width());
    r.set_height(req->height());
    google::protobuf::Empty out;
    return t.Call("ResizePty", r, &out);
  });
}

grpc::Status TasksService::CloseIO(grpc::ServerContext* ctx, const tv1::CloseIORequest* req,
                                   google::protobuf::Empty*) {
  return WithTask("Tasks.CloseIO", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::CloseIORequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_stdin(req->stdin());
    google::protobuf::Empty out;
    return t.Call("CloseIO", r, &out);
  });
}

grpc::Status TasksService::Pause(grpc::ServerContext* ctx, const tv1::PauseTaskRequest* req,
                                 google::protobuf::Empty*) {
  return WithTask("Tasks.Pause", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::PauseRequest r;
    r.set_id(req->container_id());
    google::protobuf::Empty out;
    return t.Call("Pause", r, &out);
  });
}

grpc::Status TasksService::Resume(grpc::ServerContext* ctx, const tv1::ResumeTaskRequest* req,
                                  google::protobuf::Empty*) {
  return WithTask("Tasks.Resume", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::ResumeRequest r;
    r.set_id(req->container_id());
    google::protobuf::Empty out;
    return t.Call("Resume", r, &out);
  });
}

grpc::Status TasksService::ListPids(grpc::ServerContext* ctx, const tv1::ListPidsRequest* req,
                                    tv1::ListPidsResponse* resp) {
  return WithTask("Tasks.ListPids", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::PidsRequest r;
    r.set_id(req->container_id());
    task::PidsResponse out;
    RETURN_IF_ERROR(t.Call("Pids", r, &out));
    *resp->mutable_processes() = out.processes();
    return Status::Ok();
  });
}

grpc::Status TasksService::Checkpoint(grpc::ServerContext*, const tv1::CheckpointTaskRequest*,
                                      tv1::CheckpointTaskResponse*) {
  return HandleNoNamespace("Tasks.Checkpoint",
                           []() -> Status { return Unimplemented("checkpoint is not supported"); });
}

grpc::Status TasksService::Update(grpc::ServerContext* ctx, const tv1::UpdateTaskRequest* req,
                                  google::protobuf::Empty*) {
  return WithTask("Tasks.Update", ctx, req->container_id(), [&](tasks::Task& t) -> Status {
    task::UpdateTaskRequest r;
    r.set_id(req->container_id());
    if (req->has_resources()) *r.mutable_resources() = req->resources();
    for (const auto& [k, v] : req->annotations()) (*r.mutable_annotations())[k] = v;
    google::protobuf::Empty out;
    return t.Call("Update", r, &out);
  });
}

grpc::Status TasksService::Metrics(grpc::ServerContext* ctx, const tv1::MetricsRequest* req,
                                   tv1::MetricsResponse* resp) {
  return Handle("Tasks.Metrics", ctx, [&](const CallCtx& c) -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(exprs));
    for (const auto& t : runtime_.List(c.ns)) {
      std::string runtime = t->runtime();
      filters::Adaptor fields = [&](std::span<const std::string> fp) -> std::optional<std::string> {
        if (fp.size() != 1) return std::nullopt;
        if (fp[0] == "id") return t->id();
        if (fp[0] == "namespace") return t->ns();
        if (fp[0] == "runtime") return runtime;
        return std::nullopt;
      };
      if (!filter.Match(fields)) continue;
      task::StatsRequest r;
      r.set_id(t->id());
      task::StatsResponse out;
      if (Status s = t->Call("Stats", r, &out); !s.ok()) {
        if (s.code() == Code::kNotFound) continue;
        return s;
      }
      auto* m = resp->add_metrics();
      *m->mutable_timestamp() = ToTimestamp(NowNanos());
      m->set_id(t->id());
      *m->mutable_data() = out.stats();
    }
    return Status::Ok();
  });
}

namespace {

// One Tasks.Wait in flight. Whoever sets `finished` first (the shim's answer or the client's
// cancellation) calls Finish, exactly once; gRPC then calls OnDone, which deletes the reactor.
// The shim's callback holds only the shared State, so it may outlive the reactor.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(std::shared_ptr<tasks::Task> task, tv1::WaitResponse* resp)
      : task_(std::move(task)), state_(std::make_shared<State>()) {
    state_->reactor = this;
    state_->resp = resp;
  }

  // May finish (and so delete) the reactor before it returns: touches only locals after.
  void Begin(const std::string& exec_id) {
    std::shared_ptr<State> state = state_;
    std::shared_ptr<tasks::Task> task = task_;
    uint64_t token = task->AddWaiter(exec_id, [state](Result<std::string> r) {
      state->Complete(std::move(r));
    });
    bool cancelled;
    {
      std::lock_guard lock(state->mu);
      state->token = token;
      cancelled = state->finished;  // cancelled before the token was known (or answered: no-op)
    }
    if (cancelled) task->CancelWait(token);
  }

  void OnCancel() override {
    uint64_t token;
    {
      std::lock_guard lock(state_->mu);
      if (state_->finished) return;
      state_->finished = true;
      token = state_->token;
    }
    if (token != 0) task_->CancelWait(token);
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override { delete this; }

 private:
  struct State {
    std::mutex mu;
    bool finished GUARDED_BY(mu) = false;
    uint64_t token GUARDED_BY(mu) = 0;  // the shim waiter, once registered
    grpc::ServerUnaryReactor* reactor = nullptr;
    tv1::WaitResponse* resp = nullptr;

    void Complete(Result<std::string> res) {
      grpc::Status status;
      {
        std::lock_guard lock(mu);
        if (finished) return;
        finished = true;
        task::WaitResponse out;
        Status s;
        if (!res) {
          s = res.error();
        } else if (!out.ParseFromString(*res)) {
          s = Internal("bad Wait response from shim");
        } else {
          resp->set_exit_status(out.exit_status());
          *resp->mutable_exited_at() = out.exited_at();
        }
        // The one answer that is not a handler's return value: it comes from the task later.
        status = ToGrpc(s);
      }
      reactor->Finish(status);
    }
  };

  std::shared_ptr<tasks::Task> task_;
  std::shared_ptr<State> state_;
};

}  // namespace

grpc::ServerUnaryReactor* TasksService::Wait(grpc::CallbackServerContext* ctx,
                                             const tv1::WaitRequest* req,
                                             tv1::WaitResponse* resp) {
  grpc::ServerUnaryReactor* reactor = nullptr;
  grpc::Status st = Handle("Tasks.Wait", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(std::shared_ptr<tasks::Task> t, runtime_.Get(c.ns, req->container_id()));
    auto* w = new WaitReactor(std::move(t), resp);
    w->Begin(req->exec_id());
    reactor = w;
    return Status::Ok();
  });
  if (reactor) return reactor;
  reactor = ctx->DefaultReactor();
  reactor->Finish(st);
  return reactor;
}

}  // namespace berth::services
