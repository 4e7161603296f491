#include "client/tasks.h"

#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>

#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"

namespace berth::client {
namespace {

namespace sapi = containerd::services::snapshots::v1;
namespace tapi = containerd::services::tasks::v1;
namespace ttypes = containerd::v1::types;
using nlohmann::json;

// How long to wait for the shim to close a finished process's stdout/stderr.
constexpr auto kOutputDrain = std::chrono::seconds(10);

std::unique_ptr<tapi::Tasks::Stub> Tasks(const Client& client) {
  return tapi::Tasks::NewStub(client.channel());
}

}  // namespace

std::string TaskStatusName(TaskStatus st) {
  std::string n = ttypes::Status_Name(st);
  return n.empty() ? "UNKNOWN" : n;
}

std::string RandomExecId() {
  std::ifstream in("/proc/sys/kernel/random/uuid");
  std::string uuid;
  in >> uuid;
  uuid.erase(std::remove(uuid.begin(), uuid.end(), '-'), uuid.end());
  return "exec-" + uuid.substr(0, 12);
}

FifoPaths FifoPathsOf(const Process& p) {
  return FifoPaths{p.stdin(), p.stdout(), p.stderr(), p.terminal()};
}

Result<Process> GetProcess(const Client& client, const ProcessRef& p) {
  tapi::GetRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  tapi::GetResponse resp;
  RETURN_IF_ERROR(FromGrpc(Tasks(client)->Get(client.NewContext().get(), req, &resp)));
  return resp.process();
}

Result<std::vector<Process>> ListTasks(const Client& client) {
  tapi::ListTasksRequest req;
  tapi::ListTasksResponse resp;
  RETURN_IF_ERROR(FromGrpc(Tasks(client)->List(client.NewContext().get(), req, &resp)));
  return std::vector<Process>(resp.tasks().begin(), resp.tasks().end());
}

Result<std::vector<uint32_t>> ListPids(const Client& client, const std::string& id) {
  tapi::ListPidsRequest req;
  req.set_container_id(id);
  tapi::ListPidsResponse resp;
  RETURN_IF_ERROR(FromGrpc(Tasks(client)->ListPids(client.NewContext().get(), req, &resp)));
  std::vector<uint32_t> pids;
  for (const auto& p : resp.processes()) pids.push_back(p.pid());
  return pids;
}

Result<uint32_t> CreateTask(const Client& client, const Container& c, const FifoPaths& fifos) {
  tapi::CreateTaskRequest req;
  req.set_container_id(c.id());
  if (!c.snapshot_key().empty()) {
    auto snaps = sapi::Snapshots::NewStub(client.channel());
    sapi::MountsRequest mreq;
    mreq.set_snapshotter(c.snapshotter());
    mreq.set_key(c.snapshot_key());
    sapi::MountsResponse mresp;
    RETURN_IF_ERROR(FromGrpc(snaps->Mounts(client.NewContext().get(), mreq, &mresp))
                        .Wrap("snapshot mounts of " + Quote(c.id())));
    *req.mutable_rootfs() = mresp.mounts();
  }
  req.set_stdin(fifos.stdin);
  req.set_stdout(fifos.stdout);
  req.set_stderr(fifos.stderr);
  req.set_terminal(fifos.terminal);
  tapi::CreateTaskResponse resp;
  RETURN_IF_ERROR(FromGrpc(Tasks(client)->Create(client.NewContext().get(), req, &resp)));
  return resp.pid();
}

Status Exec(const Client& client, const ProcessRef& p, const json& process,
            const FifoPaths& fifos) {
  tapi::ExecProcessRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  req.set_stdin(fifos.stdin);
  req.set_stdout(fifos.stdout);
  req.set_stderr(fifos.stderr);
  req.set_terminal(fifos.terminal);
  req.mutable_spec()->set_type_url(kProcessTypeUrl);
  req.mutable_spec()->set_value(process.dump());
  google::protobuf::Empty resp;
  return FromGrpc(Tasks(client)->Exec(client.NewContext().get(), req, &resp));
}

Status Start(const Client& client, const ProcessRef& p) {
  tapi::StartRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  tapi::StartResponse resp;
  return FromGrpc(Tasks(client)->Start(client.NewContext().get(), req, &resp));
}

Status Kill(const Client& client, const ProcessRef& p, int sig, bool all) {
  tapi::KillRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  req.set_signal(static_cast<uint32_t>(sig));
  req.set_all(all);
  google::protobuf::Empty resp;
  return FromGrpc(Tasks(client)->Kill(client.NewContext().get(), req, &resp));
}

Status Pause(const Client& client, const std::string& id) {
  tapi::PauseTaskRequest req;
  req.set_container_id(id);
  google::protobuf::Empty resp;
  return FromGrpc(Tasks(client)->Pause(client.NewContext().get(), req, &resp));
}

Status Resume(const Client& client, const std::string& id) {
  tapi::ResumeTaskRequest req;
  req.set_container_id(id);
  google::protobuf::Empty resp;
  return FromGrpc(Tasks(client)->Resume(client.NewContext().get(), req, &resp));
}

Result<uint32_t> Wait(const Client& client, const ProcessRef& p) {
  tapi::WaitRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  tapi::WaitResponse resp;
  RETURN_IF_ERROR(FromGrpc(Tasks(client)->Wait(client.NewContext().get(), req, &resp)));
  return resp.exit_status();
}

Result<uint32_t> Delete(const Client& client, const ProcessRef& p) {
  tapi::DeleteResponse resp;
  if (p.exec_id.empty()) {
    tapi::DeleteTaskRequest req;
    req.set_container_id(p.id);
    RETURN_IF_ERROR(FromGrpc(Tasks(client)->Delete(client.NewContext().get(), req, &resp)));
  } else {
    tapi::DeleteProcessRequest req;
    req.set_container_id(p.id);
    req.set_exec_id(p.exec_id);
    RETURN_IF_ERROR(
        FromGrpc(Tasks(client)->DeleteProcess(client.NewContext().get(), req, &resp)));
  }
  return resp.exit_status();
}

void CloseStdin(const Client& client, const ProcessRef& p) {
  tapi::CloseIORequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  req.set_stdin(true);
  google::protobuf::Empty resp;
  (void)Tasks(client)->CloseIO(client.NewContext().get(), req, &resp);
}

void ResizeToTerminal(const Client& client, const ProcessRef& p) {
  auto [w, h] = TerminalSize();
  if (w == 0) return;
  tapi::ResizePtyRequest req;
  req.set_container_id(p.id);
  req.set_exec_id(p.exec_id);
  req.set_width(w);
  req.set_height(h);
  google::protobuf::Empty resp;
  (void)Tasks(client)->ResizePty(client.NewContext().get(), req, &resp);
}

Result<json> ExecProcessSpec(const Container& c, const ExecOptions& o) {
  json spec = json::parse(c.spec().value(), nullptr, false);
  if (spec.is_discarded() || !spec.is_object() || !spec.contains("process") ||
      !spec["process"].is_object()) {
    return Err(Code::kFailedPrecondition,
               "container " + Quote(c.id()) + " has no OCI process spec");
  }
  json proc = spec["process"];
  proc["args"] = o.args;
  proc["terminal"] = o.tty;
  if (!o.cwd.empty()) proc["cwd"] = o.cwd;
  std::vector<std::string> env;
  if (proc.contains("env") && proc["env"].is_array()) {
    for (const auto& e : proc["env"]) {
      if (e.is_string()) env.push_back(e.get<std::string>());
    }
  }
  env = MergeEnv(env, o.env);
  if (o.tty) env = MergeEnv(env, {"TERM=xterm"});
  proc["env"] = env;
  if (!o.user.empty()) {
    // The same rule as an image's USER: numbers only here, and in range (CVE-2024-40635).
    auto ref = ParseUser(o.user);
    if (!ref) return std::unexpected(ref.error().Wrap("--user"));
    if (!ref->uid || (!ref->group.empty() && !ref->gid)) {
      return Err(Code::kInvalidArgument, "--user takes a numeric uid[:gid]");
    }
    proc["user"]["uid"] = *ref->uid;
    if (ref->gid) proc["user"]["gid"] = *ref->gid;
  }
  return proc;
}

const std::vector<int>& ForwardedSignals() {
  static const std::vector<int> kForwarded = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  return kForwarded;
}

SignalForwarder::SignalForwarder(std::function<void(const Status&)> on_error)
    : on_error_(std::move(on_error)) {
  std::vector<int> sigs = ForwardedSignals();
  sigs.push_back(SIGWINCH);
  ::signal(SIGPIPE, SIG_IGN);
  catcher_ = std::make_unique<SignalCatcher>(sigs, [this](int sig) {
    std::lock_guard lock(mu_);
    if (!client_) {
      // Nothing to pass it to yet (or any more): behave as if it had not been caught.
      if (sig != SIGWINCH) std::_Exit(128 + sig);
      return;
    }
    if (sig == SIGWINCH) {
      if (tty_) ResizeToTerminal(*client_, target_);
      return;
    }
    if (Status st = Kill(*client_, target_, sig); !st.ok() && on_error_) {
      on_error_(st.Wrap("forward " + SignalName(sig)));
    }
  });
}

SignalForwarder::~SignalForwarder() {
  catcher_.reset();
  std::lock_guard lock(mu_);
  client_ = nullptr;
}

void SignalForwarder::Target(const Client* client, ProcessRef p, bool tty) {
  std::lock_guard lock(mu_);
  client_ = client;
  target_ = std::move(p);
  tty_ = tty;
}

Result<uint32_t> StartAndWait(const Client& client, const ProcessRef& p, const FifoPaths& fifos,
                              IoCopier& io, bool interactive_tty) {
  std::optional<RawTerminal> raw;
  if (interactive_tty) raw.emplace();
  io.Start();
  // The pty exists from Create on: size it before the process can look.
  if (fifos.terminal) ResizeToTerminal(client, p);
  RETURN_IF_ERROR(Start(client, p));
  if (fifos.terminal) ResizeToTerminal(client, p);
  auto status = Wait(client, p);
  // ctr's io.Wait before Delete: the output drains before the process goes.
  io.Wait(kOutputDrain);
  return status;
}

Result<uint32_t> RunTask(const Client& client, SignalForwarder& forwarder, const Container& c,
                         const RunTaskOptions& o) {
  bool tty = SpecTerminal(c);
  const ProcessRef init{c.id(), ""};
  auto warn = [&](const Status& s) {
    if (o.warn) o.warn(s);
  };
  auto cleanup_container = [&] {
    if (!o.remove) return;
    if (Status st = DeleteContainer(client, c); !st.ok()) warn(st.Wrap("remove container"));
  };
  auto fifos = NewFifoSet(o.fifo_root, c.id(), tty);
  if (!fifos) {
    cleanup_container();
    return std::unexpected(fifos.error());
  }
  auto io = IoCopier::Open(*fifos, [&client, init] { CloseStdin(client, init); });
  if (!io) {
    RemoveFifoSet(*fifos);
    cleanup_container();
    return std::unexpected(io.error());
  }
  auto pid = CreateTask(client, c, *fifos);
  if (!pid) {
    io->reset();
    RemoveFifoSet(*fifos);
    cleanup_container();
    return std::unexpected(pid.error());
  }
  if (o.detach) {
    // The FIFOs stay for `attach`; removing the task removes them.
    if (Status st = Start(client, init); !st.ok()) {
      (void)Delete(client, init);
      RemoveFifoSet(*fifos);
      return std::unexpected(st);
    }
    return 0u;
  }
  forwarder.Target(&client, init, tty);
  auto status = StartAndWait(client, init, *fifos, **io, tty);
  forwarder.Target(nullptr, {}, false);
  if (!status) {
    // Start failed (or Wait broke): the task must not outlive us.
    (void)Kill(client, init, SIGKILL, true);
    (void)Wait(client, init);
  }
  io->reset();
  auto deleted = Delete(client, init);
  RemoveFifoSet(*fifos);
  cleanup_container();
  if (!status) return std::unexpected(status.error());
  if (!deleted) return std::unexpected(deleted.error().Wrap("delete task"));
  return *status;
}

Result<uint32_t> RemoveTask(const Client& client, const std::string& id, bool force) {
  const ProcessRef init{id, ""};
  ASSIGN_OR_RETURN(Process p, GetProcess(client, init));
  if (p.status() != ttypes::STOPPED && p.status() != ttypes::CREATED) {
    if (!force) {
      return Err(Code::kFailedPrecondition,
                 "task " + Quote(id) + " is " + TaskStatusName(p.status()) +
                     "; stop it first (berth kill) or use --force");
    }
    if (p.status() == ttypes::PAUSED) (void)Resume(client, id);
    Status k = Kill(client, init, SIGKILL, true);
    if (!k.ok() && k.code() != Code::kNotFound) return std::unexpected(k.Wrap("kill"));
    ASSIGN_OR_RETURN(uint32_t ignored, Wait(client, init));
    (void)ignored;
  }
  ASSIGN_OR_RETURN(uint32_t exit_status, Delete(client, init));
  RemoveFifoSet(FifoPathsOf(p));
  return exit_status;
}

}  // namespace berth::client
