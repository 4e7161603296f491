#include "oci/container.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/validate.h"
#include "oci/console.h"

namespace berth::oci {

// ---------------------------------------------------------------------------------------------
// RuntimeEnv

Result<std::unique_ptr<RuntimeEnv>> RuntimeEnv::Create(berth::EventLoop* loop) {
  std::unique_ptr<RuntimeEnv> env(new RuntimeEnv());
  // Block SIGCHLD before the loop thread exists so no thread ever takes it (reaper.h).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (loop) {
    env->loop_ = EventLoop::Borrow(*loop);
  } else {
    ASSIGN_OR_RETURN(env->loop_, EventLoop::Create());
  }
  ASSIGN_OR_RETURN(env->reaper_, Reaper::Create(env->loop_.get()));
  ASSIGN_OR_RETURN(env->cgroups_, ReadCgroupLayout());
  return env;
}

RuntimeEnv::~RuntimeEnv() {
  reaper_.reset();
  loop_.reset();
}

std::string_view ProcessStatusName(ProcessStatus status) {
  switch (status) {
    case ProcessStatus::kCreated: return "created";
    case ProcessStatus::kRunning: return "running";
    case ProcessStatus::kPaused: return "paused";
    case ProcessStatus::kStopped: return "stopped";
    case ProcessStatus::kDeleted: return "deleted";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------

struct Container::Process {
  std::string exec_id;
  StdioSpec stdio;
  std::string process_json;  // execs only

  std::mutex op_mu;               // serialises runtime calls and io access for this process
  std::unique_ptr<ProcessIo> io GUARDED_BY(op_mu);

  std::mutex mu;  // state below; taken briefly, also by the exit callback on the loop thread
  std::condition_variable cv;
  pid_t pid = 0;
  ProcessStatus status = ProcessStatus::kCreated;
  std::optional<Exit> exit;
};

// What exit/OOM callbacks on the loop thread may touch after the Container is gone.
struct Container::Shared {
  bool alive = true;  // loop thread only
  ContainerEvents events;
  std::string kill_dir;  // cgroup whose cgroup.procs get SIGKILL when init exits (no pid ns)
};

namespace {

Result<pid_t> ReadPidFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, 64));
  try {
    size_t used = 0;
    long pid = std::stol(text, &used);
    if (pid <= 0) throw std::out_of_range("pid");
    return static_cast<pid_t>(pid);
  } catch (const std::exception&) {
    return std::unexpected(Internal("bad pid file " + path + ": " + text));
  }
}

// Sends SIGKILL to every process in a cgroup; used when init exits in a container without its
// own pid namespace, where the kernel would not do it (containerd: ShouldKillAllOnExit).
void KillCgroupProcs(const std::string& dir) {
  auto procs = ReadFile(dir + "/cgroup.procs", 1 << 20);
  if (!procs) return;
  size_t start = 0;
  while (start < procs->size()) {
    size_t end = procs->find('\n', start);
    if (end == std::string::npos) end = procs->size();
    std::string line = procs->substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    pid_t pid = static_cast<pid_t>(std::atol(line.c_str()));
    if (pid > 0) ::kill(pid, SIGKILL);
  }
}

}  // namespace

Container::Container(RuntimeEnv* env, std::shared_ptr<OciRuntime> runtime, ContainerConfig config)
    : env_(env),
      runtime_(std::move(runtime)),
      config_(std::move(config)),
      shared_(std::make_shared<Shared>()) {}

Result<std::unique_ptr<Container>> Container::Create(RuntimeEnv* env,
                                                     std::shared_ptr<OciRuntime> runtime,
                                                     ContainerConfig config,
                                                     ContainerEvents events) {
  RETURN_IF_ERROR(ValidateIdentifier(config.id));
  if (!config.bundle.starts_with("/")) {
    return std::unexpected(InvalidArgument("bundle must be an absolute path: " + config.bundle));
  }
  std::unique_ptr<Container> c(new Container(env, std::move(runtime), std::move(config)));
  c->shared_->events = std::move(events);
  const ContainerConfig& cfg = c->config_;

  ASSIGN_OR_RETURN(std::string spec_text, ReadFile(cfg.bundle + "/config.json", 16 << 20));
  auto spec = nlohmann::json::parse(spec_text, nullptr, false);
  if (!spec.is_object()) return std::unexpected(InvalidArgument("bundle config.json: bad JSON"));
  c->own_pid_namespace_ = false;
  if (auto linux = spec.find("linux"); linux != spec.end() && linux->contains("namespaces")) {
    for (auto& ns : (*linux)["namespaces"]) {
      if (!ns.is_object()) continue;
      auto type = ns.find("type");
      auto path = ns.find("path");
      bool is_pid = type != ns.end() && type->is_string() && *type == "pid";
      bool joins = path != ns.end() && path->is_string() && !path->get<std::string>().empty();
      if (is_pid && !joins) c->own_pid_namespace_ = true;
    }
  }

  auto init = std::make_shared<Process>();
  init->stdio = cfg.stdio;
  IoOptions io_opts{cfg.id, cfg.ns, cfg.io_uid, cfg.io_gid};
  ASSIGN_OR_RETURN(init->io, ProcessIo::Open(env->loop(), env->reaper(), cfg.stdio, io_opts));
  std::unique_ptr<ConsoleSocket> console;
  if (cfg.stdio.terminal) {
    ASSIGN_OR_RETURN(console, ConsoleSocket::Create());
  }

  std::string pid_file = cfg.bundle + "/init.pid";
  ::unlink(pid_file.c_str());
  CreateOptions opts;
  opts.bundle = cfg.bundle;
  opts.pid_file = pid_file;
  opts.console_socket = console ? console->path() : "";
  opts.no_pivot = cfg.no_pivot;
  opts.no_new_keyring = cfg.no_new_keyring;
  opts.stdio = init->io->runtime_stdio();
  c->init_ = init;  // from here on the destructor force-deletes the runtime container
  Status st = c->runtime_->Create(cfg.id, opts);
  if (!st.ok()) {
    c->init_.reset();
    init->io->Close();
    // A failed create may leave a half-made container behind (runc does on some errors) —
    // unless the id was taken, when the container there is somebody else's.
    if (st.code() != Code::kAlreadyExists) (void)c->runtime_->Delete(cfg.id, /*force=*/true);
    return std::unexpected(std::move(st));
  }
  if (console) {
    ASSIGN_OR_RETURN(UniqueFd master, console->ReceiveMaster());
    RETURN_IF_ERROR(init->io->AttachConsole(std::move(master)));
  } else {
    RETURN_IF_ERROR(init->io->Start());
  }
  ASSIGN_OR_RETURN(pid_t pid, ReadPidFile(pid_file));
  {
    std::lock_guard lock(init->mu);
    init->pid = pid;
  }

  auto cg = CgroupPathsForPid(pid, env->cgroups());
  if (cg) {
    c->cgroup_ = *cg;
    // The cgroup to empty when init exits without a pid namespace: never a hierarchy root and
    // never our own cgroup (a runtime that made none would leave the container in ours).
    auto self = CgroupPathsForPid(::getpid(), env->cgroups());
    for (const char* ctl : {"pids", "freezer", "memory"}) {
      std::string dir = c->cgroup_.DirFor(ctl);
      bool is_root = dir.empty() || dir == env->cgroups().unified_mountpoint ||
                     std::any_of(env->cgroups().v1.begin(), env->cgroups().v1.end(),
                                 [&](auto& h) { return h.mountpoint == dir; });
      bool is_self = self && self->DirFor(ctl) == dir;
      if (!is_root && !is_self) {
        c->shared_->kill_dir = dir;
        break;
      }
    }
    std::weak_ptr<Shared> weak = c->shared_;
    auto oom = OomWatcher::Create(env->loop(), c->cgroup_, [weak] {
      auto s = weak.lock();
      if (s && s->alive && s->events.on_oom) s->events.on_oom();
    });
    if (oom) {
      c->oom_ = std::move(*oom);
    } else {
      spdlog::warn("container {}: no OOM notifications: {}", cfg.id, oom.error().ToString());
    }
  } else {
    spdlog::warn("container {}: cgroup not found: {}", cfg.id, cg.error().ToString());
  }
  // Last: the exit callback reads kill_dir on the loop thread.
  c->WatchExit(init);
  return c;
}

void Container::WatchExit(const std::shared_ptr<Process>& p) {
  pid_t pid;
  {
    std::lock_guard lock(p->mu);
    pid = p->pid;
  }
  bool is_init = p.get() == init_.get();
  bool kill_all = is_init && !own_pid_namespace_;
  std::weak_ptr<Process> weak = p;
  std::shared_ptr<Shared> shared = shared_;
  std::string exec_id = p->exec_id;
  env_->reaper()->Watch(pid)->OnExit([weak, shared, exec_id, kill_all](const Exit& e) {
    if (auto proc = weak.lock()) {
      std::lock_guard lock(proc->mu);
      if (proc->status != ProcessStatus::kDeleted) proc->status = ProcessStatus::kStopped;
      proc->exit = e;
      proc->cv.notify_all();
    }
    if (!shared->alive) return;
    if (kill_all && !shared->kill_dir.empty()) KillCgroupProcs(shared->kill_dir);
    if (shared->events.on_exit) shared->events.on_exit(exec_id, e);
  });
}

Container::~Container() { ForceCleanup(); }

void Container::ForceCleanup() {
  env_->loop()->RunSync([&] { shared_->alive = false; });
  oom_.reset();
  std::vector<std::shared_ptr<Process>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, p] : execs_) all.push_back(p);
    execs_.clear();
  }
  if (init_) {
    all.push_back(init_);
    bool deleted;
    {
      std::lock_guard lock(init_->mu);
      deleted = init_->status == ProcessStatus::kDeleted;
    }
    if (!deleted) {
      (void)runtime_->Kill(config_.id, SIGKILL, /*all=*/true);
      if (Status st = runtime_->Delete(config_.id, /*force=*/true);
          !st.ok() && st.code() != Code::kNotFound) {
        spdlog::warn("container {}: force delete: {}", config_.id, st.ToString());
      }
    }
  }
  for (auto& p : all) {
    std::lock_guard lock(p->op_mu);
    if (p->io) p->io->Close();
    std::lock_guard l(p->mu);
    if (p->pid && !p->exit) env_->reaper()->Unwatch(p->pid);
  }
}

pid_t Container::pid() const {
  std::lock_guard lock(init_->mu);
  return init_->pid;
}

Result<std::shared_ptr<Container::Process>> Container::Find(const std::string& exec_id) {
  if (exec_id.empty()) return init_;
  std::lock_guard lock(mu_);
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) {
    return std::unexpected(NotFound("process " + exec_id + " does not exist"));
  }
  return it->second;
}

Result<pid_t> Container::Start(const std::string& exec_id) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  std::lock_guard op(p->op_mu);
  if (!exec_id.empty()) return StartExec(p);
  {
    std::lock_guard lock(p->mu);
    if (p->status != ProcessStatus::kCreated) {
      return std::unexpected(FailedPrecondition(
          "cannot start a " + std::string(ProcessStatusName(p->status)) + " process"));
    }
  }
  RETURN_IF_ERROR(runtime_->Start(config_.id));
  std::lock_guard lock(p->mu);
  if (p->status == ProcessStatus::kCreated) p->status = ProcessStatus::kRunning;
  return p->pid;
}

Result<pid_t> Container::StartExec(const std::shared_ptr<Process>& p) {
  {
    std::lock_guard lock(p->mu);
    if (p->status != ProcessStatus::kCreated || p->pid != 0) {
      return std::unexpected(FailedPrecondition(
          "cannot start a " + std::string(ProcessStatusName(p->status)) + " process"));
    }
  }
  {
    std::lock_guard lock(init_->mu);
    if (init_->status != ProcessStatus::kRunning) {
      return std::unexpected(FailedPrecondition(
          "cannot exec in a " + std::string(ProcessStatusName(init_->status)) + " container"));
    }
  }
  auto spec = nlohmann::json::parse(p->process_json, nullptr, false);
  spec["terminal"] = p->stdio.terminal;
  IoOptions io_opts{p->exec_id, config_.ns, config_.io_uid, config_.io_gid};
  ASSIGN_OR_RETURN(auto io, ProcessIo::Open(env_->loop(), env_->reaper(), p->stdio, io_opts));
  std::unique_ptr<ConsoleSocket> console;
  if (p->stdio.terminal) {
    ASSIGN_OR_RETURN(console, ConsoleSocket::Create());
  }
  std::string pid_file = config_.bundle + "/" + p->exec_id + ".pid";
  ::unlink(pid_file.c_str());
  ExecOptions opts;
  opts.process_json = spec.dump();
  opts.pid_file = pid_file;
  opts.console_socket = console ? console->path() : "";
  opts.detach = true;
  opts.stdio = io->runtime_stdio();
  RETURN_IF_ERROR(runtime_->Exec(config_.id, opts));
  // From here the process runs: keep its io even if wiring the copy fails, so Delete closes it.
  p->io = std::move(io);
  auto pid = ReadPidFile(pid_file);
  if (pid) {
    std::lock_guard lock(p->mu);
    p->pid = *pid;
    p->status = ProcessStatus::kRunning;
  }
  if (pid) WatchExit(p);
  if (console) {
    auto master = console->ReceiveMaster();
    if (!master) return std::unexpected(master.error());
    RETURN_IF_ERROR(p->io->AttachConsole(std::move(*master)));
  } else {
    RETURN_IF_ERROR(p->io->Start());
  }
  if (!pid) return std::unexpected(pid.error());
  return *pid;
}

Result<Exit> Container::Delete(const std::string& exec_id) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  std::lock_guard op(p->op_mu);
  ProcessStatus status;
  {
    std::lock_guard lock(p->mu);
    status = p->status;
  }
  if (status == ProcessStatus::kRunning || status == ProcessStatus::kPaused) {
    return std::unexpected(FailedPrecondition("cannot delete a running process"));
  }
  if (status == ProcessStatus::kDeleted) {
    return std::unexpected(NotFound("process " + exec_id + " already deleted"));
  }
  if (p->io) p->io->WaitOutput(std::chrono::seconds(2));  // drain what is left, as containerd

  if (exec_id.empty()) {
    // A created-but-never-started init is still a process: force removes it.
    Status st = runtime_->Delete(config_.id, /*force=*/status == ProcessStatus::kCreated);
    if (!st.ok() && st.code() != Code::kNotFound) return std::unexpected(st);
    if (status == ProcessStatus::kCreated) {
      std::unique_lock lock(p->mu);
      p->cv.wait_for(lock, std::chrono::seconds(2), [&] { return p->exit.has_value(); });
    }
    oom_.reset();
  } else {
    ::unlink((config_.bundle + "/" + exec_id + ".pid").c_str());
  }
  if (p->io) p->io->Close();

  Exit result;
  {
    std::lock_guard lock(p->mu);
    p->status = ProcessStatus::kDeleted;
    result = p->exit.value_or(Exit{p->pid, 0, std::chrono::system_clock::time_point()});
    if (!p->exit && p->pid) env_->reaper()->Unwatch(p->pid);
  }
  if (!exec_id.empty()) {
    std::lock_guard lock(mu_);
    execs_.erase(exec_id);
  }
  return result;
}

Result<std::vector<ProcessInfo>> Container::Pids() {
  ASSIGN_OR_RETURN(std::vector<pid_t> pids, runtime_->Ps(config_.id));
  std::map<pid_t, std::string> exec_pids;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, p] : execs_) {
      std::lock_guard l(p->mu);
      if (p->pid) exec_pids[p->pid] = id;
    }
  }
  std::vector<ProcessInfo> out;
  for (pid_t pid : pids) {
    auto it = exec_pids.find(pid);
    out.push_back({pid, it == exec_pids.end() ? "" : it->second});
  }
  return out;
}

Status Container::Pause() {
  std::lock_guard op(init_->op_mu);
  {
    std::lock_guard lock(init_->mu);
    if (init_->status != ProcessStatus::kRunning) {
      return FailedPrecondition("cannot pause a " + std::string(ProcessStatusName(init_->status)) +
                                " container");
    }
  }
  RETURN_IF_ERROR(runtime_->Pause(config_.id));
  std::lock_guard lock(init_->mu);
  if (init_->status == ProcessStatus::kRunning) init_->status = ProcessStatus::kPaused;
  return Status::Ok();
}

Status Container::Resume() {
  std::lock_guard op(init_->op_mu);
  {
    std::lock_guard lock(init_->mu);
    if (init_->status != ProcessStatus::kPaused) {
      return FailedPrecondition("cannot resume a " + std::string(ProcessStatusName(init_->status)) +
                                " container");
    }
  }
  RETURN_IF_ERROR(runtime_->Resume(config_.id));
  std::lock_guard lock(init_->mu);
  if (init_->status == ProcessStatus::kPaused) init_->status = ProcessStatus::kRunning;
  return Status::Ok();
}

Status Container::Kill(const std::string& exec_id, int signal, bool all) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  pid_t pid;
  ProcessStatus status;
  {
    std::lock_guard lock(p->mu);
    pid = p->pid;
    status = p->status;
  }
  if (status == ProcessStatus::kDeleted) return NotFound("process already deleted");
  if (exec_id.empty()) {
    if (status == ProcessStatus::kStopped && !all) {
      return NotFound("process already finished");
    }
    return runtime_->Kill(config_.id, signal, all);
  }
  if (pid == 0) return FailedPrecondition("process not created");
  if (status == ProcessStatus::kStopped) return NotFound("process already finished");
  if (::kill(pid, signal) != 0) {
    if (errno == ESRCH) return NotFound("process already finished");
    return StatusFromErrno(errno, "kill exec " + exec_id);
  }
  return Status::Ok();
}

Status Container::Exec(const std::string& exec_id, const std::string& process_json,
                       const StdioSpec& stdio) {
  RETURN_IF_ERROR(ValidateIdentifier(exec_id));
  auto spec = nlohmann::json::parse(process_json, nullptr, false);
  if (!spec.is_object() || !spec.contains("args")) {
    return InvalidArgument("exec " + exec_id + ": process spec must be a JSON object with args");
  }
  auto p = std::make_shared<Process>();
  p->exec_id = exec_id;
  p->stdio = stdio;
  p->process_json = process_json;
  std::lock_guard lock(mu_);
  if (!execs_.emplace(exec_id, p).second) {
    return AlreadyExists("exec " + exec_id + " already exists");
  }
  return Status::Ok();
}

Status Container::ResizePty(const std::string& exec_id, uint16_t width, uint16_t height) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  std::lock_guard op(p->op_mu);
  if (!p->io) return FailedPrecondition("process has no stdio yet");
  return p->io->Resize(width, height);
}

Status Container::CloseIO(const std::string& exec_id) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  std::lock_guard op(p->op_mu);
  if (p->io) p->io->CloseStdin();
  return Status::Ok();
}

Status Container::Update(const std::string& resources_json) {
  return runtime_->Update(config_.id, resources_json);
}

Result<Exit> Container::Wait(const std::string& exec_id, std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  std::unique_lock lock(p->mu);
  auto done = [&] { return p->exit.has_value(); };
  if (timeout == std::chrono::milliseconds::max()) {
    p->cv.wait(lock, done);
  } else if (!p->cv.wait_for(lock, timeout, done)) {
    return std::unexpected(Status(Code::kDeadlineExceeded, "wait for process " + exec_id));
  }
  return *p->exit;
}

Result<CgroupStats> Container::Stats() {
  if (cgroup_.v1.empty() && cgroup_.unified.empty()) {
    return std::unexpected(NotFound("cgroup does not exist"));
  }
  return ReadCgroupStats(cgroup_);
}

Result<ProcessState> Container::State(const std::string& exec_id) {
  ASSIGN_OR_RETURN(auto p, Find(exec_id));
  bool container_paused;
  {
    std::lock_guard lock(init_->mu);
    container_paused = init_->status == ProcessStatus::kPaused;
  }
  ProcessState s;
  s.exec_id = exec_id;
  s.stdio = p->stdio;
  std::lock_guard lock(p->mu);
  s.pid = p->pid;
  s.status = p->status;
  if (container_paused && s.status == ProcessStatus::kRunning) s.status = ProcessStatus::kPaused;
  if (p->exit) {
    s.exit_status = p->exit->status;
    s.exited_at = p->exit->time;
  }
  return s;
}

}  // namespace berth::oci
