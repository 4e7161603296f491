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

// The task of the call's namespace, or the error to answer.
#define TASK_OR_RETURN(shim, ctx, id)               \
  auto ns_##shim = RequireNamespace(ctx);           \
  if (!ns_##shim) return ToGrpc(ns_##shim.error()); \
  auto shim = manager_.Get(*ns_##shim, (id));       \
  if (!shim) return ToGrpc(shim.error())

// A process's state as containerd's getProcessState reports it.
Status ProcessState(tasks::Shim& shim, const std::string& exec_id, types::Process* out) {
  task::StateRequest req;
  req.set_id(shim.id());
  req.set_exec_id(exec_id);
  task::StateResponse st;
  Status s = shim.Call("State", req, &st, kStateTimeout);
  if (!s.ok()) {
    if (s.code() == Code::kNotFound) return s;
    spdlog::error("get state for {}: {}", exec_id.empty() ? shim.id() : exec_id, s.ToString());
  }
  out->set_id(exec_id.empty() ? shim.id() : exec_id);
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

grpc::Status TasksService::Create(grpc::ServerContext* ctx, const tv1::CreateTaskRequest* req,
                                  tv1::CreateTaskResponse* resp) {
  return Guard("Tasks.Create", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    auto c = containers_.Get(*ns, req->container_id());
    if (!c) return ToGrpc(c.error());
    if (req->has_checkpoint() && !req->checkpoint().digest().empty()) {
      return ToGrpc(Unimplemented("checkpoint restore is not supported"));
    }
    tasks::CreateOptions o;
    o.ns = *ns;
    o.id = c->id;
    o.runtime = req->runtime_path().empty() ? c->runtime_name : req->runtime_path();
    if (c->spec) o.spec = c->spec->value;
    if (req->has_options()) {
      o.options = tasks::AnyBytes{req->options().type_url(), req->options().value()};
    } else if (c->runtime_options) {
      o.options = tasks::AnyBytes{c->runtime_options->type_url, c->runtime_options->value};
    }
    o.rootfs.assign(req->rootfs().begin(), req->rootfs().end());
    o.stdin_path = req->stdin();
    o.stdout_path = req->stdout();
    o.stderr_path = req->stderr();
    o.terminal = req->terminal();
    auto shim = manager_.CreateTask(o);
    if (!shim) return ToGrpc(shim.error());
    resp->set_container_id(c->id);
    resp->set_pid((*shim)->pid());
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::Start(grpc::ServerContext* ctx, const tv1::StartRequest* req,
                                 tv1::StartResponse* resp) {
  return Guard("Tasks.Start", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::StartRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    task::StartResponse out;
    if (Status s = (*shim)->Call("Start", r, &out); !s.ok()) return ToGrpc(s);
    resp->set_pid(out.pid());
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::Delete(grpc::ServerContext* ctx, const tv1::DeleteTaskRequest* req,
                                  tv1::DeleteResponse* resp) {
  return Guard("Tasks.Delete", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    auto d = manager_.Delete(*ns, req->container_id());
    if (!d) return ToGrpc(d.error());
    resp->set_pid(d->pid());
    resp->set_exit_status(d->exit_status());
    *resp->mutable_exited_at() = d->exited_at();
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::DeleteProcess(grpc::ServerContext* ctx,
                                         const tv1::DeleteProcessRequest* req,
                                         tv1::DeleteResponse* resp) {
  return Guard("Tasks.DeleteProcess", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::DeleteRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    task::DeleteResponse out;
    if (Status s = (*shim)->Call("Delete", r, &out); !s.ok()) return ToGrpc(s);
    resp->set_id(req->exec_id());
    resp->set_pid(out.pid());
    resp->set_exit_status(out.exit_status());
    *resp->mutable_exited_at() = out.exited_at();
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::Get(grpc::ServerContext* ctx, const tv1::GetRequest* req,
                               tv1::GetResponse* resp) {
  return Guard("Tasks.Get", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    return ToGrpc(ProcessState(**shim, req->exec_id(), resp->mutable_process()));
  });
}

grpc::Status TasksService::List(grpc::ServerContext* ctx, const tv1::ListTasksRequest*,
                                tv1::ListTasksResponse* resp) {
  return Guard("Tasks.List", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    for (const auto& shim : manager_.List(*ns)) {
      types::Process p;
      // A task deleted meanwhile is simply not listed.
      if (ProcessState(*shim, "", &p).ok()) *resp->add_tasks() = std::move(p);
    }
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::Kill(grpc::ServerContext* ctx, const tv1::KillRequest* req,
                                google::protobuf::Empty*) {
  return Guard("Tasks.Kill", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::KillRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_signal(req->signal());
    r.set_all(req->all());
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("Kill", r, &out));
  });
}

grpc::Status TasksService::Exec(grpc::ServerContext* ctx, const tv1::ExecProcessRequest* req,
                                google::protobuf::Empty*) {
  return Guard("Tasks.Exec", [&] {
    if (req->exec_id().empty()) return ToGrpc(InvalidArgument("exec id cannot be empty"));
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::ExecProcessRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_terminal(req->terminal());
    r.set_stdin(req->stdin());
    r.set_stdout(req->stdout());
    r.set_stderr(req->stderr());
    if (req->has_spec()) *r.mutable_spec() = req->spec();
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("Exec", r, &out));
  });
}

grpc::Status TasksService::ResizePty(grpc::ServerContext* ctx, const tv1::ResizePtyRequest* req,
                                     google::protobuf::Empty*) {
  return Guard("Tasks.ResizePty", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::ResizePtyRequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_width(req->width());
    r.set_height(req->height());
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("ResizePty", r, &out));
  });
}

grpc::Status TasksService::CloseIO(grpc::ServerContext* ctx, const tv1::CloseIORequest* req,
                                   google::protobuf::Empty*) {
  return Guard("Tasks.CloseIO", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::CloseIORequest r;
    r.set_id(req->container_id());
    r.set_exec_id(req->exec_id());
    r.set_stdin(req->stdin());
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("CloseIO", r, &out));
  });
}

grpc::Status TasksService::Pause(grpc::ServerContext* ctx, const tv1::PauseTaskRequest* req,
                                 google::protobuf::Empty*) {
  return Guard("Tasks.Pause", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::PauseRequest r;
    r.set_id(req->container_id());
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("Pause", r, &out));
  });
}

grpc::Status TasksService::Resume(grpc::ServerContext* ctx, const tv1::ResumeTaskRequest* req,
                                  google::protobuf::Empty*) {
  return Guard("Tasks.Resume", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::ResumeRequest r;
    r.set_id(req->container_id());
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("Resume", r, &out));
  });
}

grpc::Status TasksService::ListPids(grpc::ServerContext* ctx, const tv1::ListPidsRequest* req,
                                    tv1::ListPidsResponse* resp) {
  return Guard("Tasks.ListPids", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::PidsRequest r;
    r.set_id(req->container_id());
    task::PidsResponse out;
    if (Status s = (*shim)->Call("Pids", r, &out); !s.ok()) return ToGrpc(s);
    *resp->mutable_processes() = out.processes();
    return grpc::Status::OK;
  });
}

grpc::Status TasksService::Checkpoint(grpc::ServerContext*, const tv1::CheckpointTaskRequest*,
                                      tv1::CheckpointTaskResponse*) {
  return ToGrpc(Unimplemented("checkpoint is not supported"));
}

grpc::Status TasksService::Update(grpc::ServerContext* ctx, const tv1::UpdateTaskRequest* req,
                                  google::protobuf::Empty*) {
  return Guard("Tasks.Update", [&] {
    TASK_OR_RETURN(shim, ctx, req->container_id());
    task::UpdateTaskRequest r;
    r.set_id(req->container_id());
    if (req->has_resources()) *r.mutable_resources() = req->resources();
    for (const auto& [k, v] : req->annotations()) (*r.mutable_annotations())[k] = v;
    google::protobuf::Empty out;
    return ToGrpc((*shim)->Call("Update", r, &out));
  });
}

grpc::Status TasksService::Metrics(grpc::ServerContext* ctx, const tv1::MetricsRequest* req,
                                   tv1::MetricsResponse* resp) {
  return Guard("Tasks.Metrics", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto filter = filters::ParseAll(exprs);
    if (!filter) return ToGrpc(filter.error());
    for (const auto& shim : manager_.List(*ns)) {
      std::string runtime = shim->runtime();
      filters::Adaptor fields = [&](std::span<const std::string> fp) -> std::optional<std::string> {
        if (fp.size() != 1) return std::nullopt;
        if (fp[0] == "id") return shim->id();
        if (fp[0] == "namespace") return shim->ns();
        if (fp[0] == "runtime") return runtime;
        return std::nullopt;
      };
      if (!filter->Match(fields)) continue;
      task::StatsRequest r;
      r.set_id(shim->id());
      task::StatsResponse out;
      if (Status s = shim->Call("Stats", r, &out); !s.ok()) {
        if (s.code() == Code::kNotFound) continue;
        return ToGrpc(s);
      }
      auto* m = resp->add_metrics();
      *m->mutable_timestamp() = ToTimestamp(NowNanos());
      m->set_id(shim->id());
      *m->mutable_data() = out.stats();
    }
    return grpc::Status::OK;
  });
}

namespace {

// One Tasks.Wait in flight. Whoever sets `finished` first (the shim's answer or the client's
// cancellation) calls Finish, exactly once; gRPC then calls OnDone, which deletes the reactor.
// The shim's callback holds only the shared State, so it may outlive the reactor.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(std::shared_ptr<tasks::Shim> shim, tv1::WaitResponse* resp)
      : shim_(std::move(shim)), state_(std::make_shared<State>()) {
    state_->reactor = this;
    state_->resp = resp;
  }

  // May finish (and so delete) the reactor before it returns: touches only locals after.
  void Begin(const std::string& exec_id) {
    std::shared_ptr<State> state = state_;
    std::shared_ptr<tasks::Shim> shim = shim_;
    uint64_t token = shim->AddWaiter(exec_id, [state](Result<std::string> r) {
      state->Complete(std::move(r));
    });
    bool cancelled;
    {
      std::lock_guard lock(state->mu);
      state->token = token;
      cancelled = state->finished;  // cancelled before the token was known (or answered: no-op)
    }
    if (cancelled) shim->CancelWait(token);
  }

  void OnCancel() override {
    uint64_t token;
    {
      std::lock_guard lock(state_->mu);
      if (state_->finished) return;
      state_->finished = true;
      token = state_->token;
    }
    if (token != 0) shim_->CancelWait(token);
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
        if (!res) {
          status = ToGrpc(res.error());
        } else if (!out.ParseFromString(*res)) {
          status = ToGrpc(Internal("bad Wait response from shim"));
        } else {
          resp->set_exit_status(out.exit_status());
          *resp->mutable_exited_at() = out.exited_at();
        }
      }
      reactor->Finish(status);
    }
  };

  std::shared_ptr<tasks::Shim> shim_;
  std::shared_ptr<State> state_;
};

}  // namespace

grpc::ServerUnaryReactor* TasksService::Wait(grpc::CallbackServerContext* ctx,
                                             const tv1::WaitRequest* req,
                                             tv1::WaitResponse* resp) {
  auto fail = [ctx](const Status& s) {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(ToGrpc(s));
    return r;
  };
  try {
    auto ns = RequireNamespace(ctx);
    if (!ns) return fail(ns.error());
    auto shim = manager_.Get(*ns, req->container_id());
    if (!shim) return fail(shim.error());
    auto* reactor = new WaitReactor(std::move(*shim), resp);
    reactor->Begin(req->exec_id());
    return reactor;
  } catch (const std::exception& e) {
    return fail(Internal(std::string("Tasks.Wait: ") + e.what()));
  }
}

}  // namespace berth::services
