#include "shim/task_service.h"

#include <malloc.h>
#include <sys/mount.h>

#include <optional>
#include <set>
#include <google/protobuf/timestamp.pb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/fs.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "common/mount.h"
#include "shim/options.h"

namespace berth::shim {

namespace task = containerd::task::v2;
namespace ev = containerd::events;
using google::protobuf::Empty;

constexpr char kService[] = "containerd.task.v2.Task";

// ---- WorkerPool ---------------------------------------------------------------------------

WorkerPool::WorkerPool(int max_threads, std::chrono::milliseconds idle)
    : max_threads_(max_threads), idle_(idle) {}

WorkerPool::~WorkerPool() {
  std::unique_lock lock(mu_);
  stop_ = true;
  cv_.notify_all();
  exited_.wait(lock, [&] { return live_ == 0; });
}

void WorkerPool::Submit(std::function<void()> job) {
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(job));
  if (waiting_ >= static_cast<int>(jobs_.size()) || live_ >= max_threads_) {
    cv_.notify_one();
    return;
  }
  ++live_;
  // Detached: a thread that exits on its own cannot be joined by anyone waiting for it. The
  // destructor waits for live_ == 0 instead; the last thing a thread touches is mu_.
  std::thread([this] { Work(); }).detach();
}

int WorkerPool::LiveThreadsForTest() {
  std::lock_guard lock(mu_);
  return live_;
}

void WorkerPool::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++waiting_;
    bool got = cv_.wait_for(lock, idle_, [&] { return stop_ || !jobs_.empty(); });
    --waiting_;
    if (jobs_.empty() && (stop_ || !got)) break;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;  // destroy captures outside the lock
    lock.lock();
  }
  if (--live_ == 0 && !stop_) {
    // Gone idle: return the heap the burst of work used (parsed specs, runtime output).
    ::malloc_trim(0);
  }
  exited_.notify_all();
}

// ---- helpers ------------------------------------------------------------------------------

namespace {

void SetTime(std::chrono::system_clock::time_point t, google::protobuf::Timestamp* ts) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  if (ns <= 0) {
    ts->set_seconds(0);
    ts->set_nanos(0);
    return;
  }
  ts->set_seconds(ns / 1000000000);
  ts->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

containerd::v1::types::Status ToProto(oci::ProcessStatus s) {
  using S = containerd::v1::types::Status;
  switch (s) {
    case oci::ProcessStatus::kCreated: return S::CREATED;
    case oci::ProcessStatus::kRunning: return S::RUNNING;
    case oci::ProcessStatus::kPaused: return S::PAUSED;
    case oci::ProcessStatus::kStopped: return S::STOPPED;
    case oci::ProcessStatus::kDeleted: return S::UNKNOWN;
  }
  return S::UNKNOWN;
}

uint64_t StatOf(const std::map<std::string, uint64_t>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? 0 : it->second;
}

void PackMetrics(const oci::CgroupStats& s, google::protobuf::Any* out) {
  const auto& st = s.memory.stat;
  if (s.memory_v2) {
    io::containerd::cgroups::v2::Metrics m;
    m.mutable_pids()->set_current(s.pids.current);
    m.mutable_pids()->set_limit(s.pids.limit);
    auto* cpu = m.mutable_cpu();
    cpu->set_usage_usec(s.cpu.usage_ns / 1000);
    cpu->set_user_usec(s.cpu.user_ns / 1000);
    cpu->set_system_usec(s.cpu.kernel_ns / 1000);
    cpu->set_nr_periods(s.cpu.periods);
    cpu->set_nr_throttled(s.cpu.throttled_periods);
    cpu->set_throttled_usec(s.cpu.throttled_ns / 1000);
    auto* mem = m.mutable_memory();
    mem->set_anon(StatOf(st, "anon"));
    mem->set_file(StatOf(st, "file"));
    mem->set_kernel_stack(StatOf(st, "kernel_stack"));
    mem->set_slab(StatOf(st, "slab"));
    mem->set_sock(StatOf(st, "sock"));
    mem->set_shmem(StatOf(st, "shmem"));
    mem->set_file_mapped(StatOf(st, "file_mapped"));
    mem->set_file_dirty(StatOf(st, "file_dirty"));
    mem->set_file_writeback(StatOf(st, "file_writeback"));
    mem->set_anon_thp(StatOf(st, "anon_thp"));
    mem->set_inactive_anon(StatOf(st, "inactive_anon"));
    mem->set_active_anon(StatOf(st, "active_anon"));
    mem->set_inactive_file(StatOf(st, "inactive_file"));
    mem->set_active_file(StatOf(st, "active_file"));
    mem->set_unevictable(StatOf(st, "unevictable"));
    mem->set_pgfault(StatOf(st, "pgfault"));
    mem->set_pgmajfault(StatOf(st, "pgmajfault"));
    mem->set_usage(s.memory.usage);
    mem->set_usage_limit(s.memory.limit);
    mem->set_swap_usage(s.memory.swap_usage);
    mem->set_swap_limit(s.memory.swap_limit);
    auto* e = m.mutable_memory_events();
    e->set_low(StatOf(s.memory.events, "low"));
    e->set_high(StatOf(s.memory.events, "high"));
    e->set_max(StatOf(s.memory.events, "max"));
    e->set_oom(StatOf(s.memory.events, "oom"));
    e->set_oom_kill(StatOf(s.memory.events, "oom_kill"));
    out->set_type_url(m.GetTypeName());
    m.SerializeToString(out->mutable_value());
    return;
  }
  io::containerd::cgroups::v1::Metrics m;
  m.mutable_pids()->set_current(s.pids.current);
  m.mutable_pids()->set_limit(s.pids.limit);
  auto* u = m.mutable_cpu()->mutable_usage();
  u->set_total(s.cpu.usage_ns);
  u->set_kernel(s.cpu.kernel_ns);
  u->set_user(s.cpu.user_ns);
  for (uint64_t v : s.cpu.per_cpu_ns) u->add_per_cpu(v);
  auto* th = m.mutable_cpu()->mutable_throttling();
  th->set_periods(s.cpu.periods);
  th->set_throttled_periods(s.cpu.throttled_periods);
  th->set_throttled_time(s.cpu.throttled_ns);
  auto* mem = m.mutable_memory();
  mem->set_cache(StatOf(st, "cache"));
  mem->set_rss(StatOf(st, "rss"));
  mem->set_rss_huge(StatOf(st, "rss_huge"));
  mem->set_mapped_file(StatOf(st, "mapped_file"));
  mem->set_dirty(StatOf(st, "dirty"));
  mem->set_writeback(StatOf(st, "writeback"));
  mem->set_pg_pg_in(StatOf(st, "pgpgin"));
  mem->set_pg_pg_out(StatOf(st, "pgpgout"));
  mem->set_pg_fault(StatOf(st, "pgfault"));
  mem->set_pg_maj_fault(StatOf(st, "pgmajfault"));
  mem->set_inactive_anon(StatOf(st, "inactive_anon"));
  mem->set_active_anon(StatOf(st, "active_anon"));
  mem->set_inactive_file(StatOf(st, "inactive_file"));
  mem->set_active_file(StatOf(st, "active_file"));
  mem->set_unevictable(StatOf(st, "unevictable"));
  mem->set_hierarchical_memory_limit(StatOf(st, "hierarchical_memory_limit"));
  mem->set_hierarchical_swap_limit(StatOf(st, "hierarchical_memsw_limit"));
  mem->set_total_cache(StatOf(st, "total_cache"));
  mem->set_total_rss(StatOf(st, "total_rss"));
  mem->set_total_rss_huge(StatOf(st, "total_rss_huge"));
  mem->set_total_mapped_file(StatOf(st, "total_mapped_file"));
  mem->set_total_dirty(StatOf(st, "total_dirty"));
  mem->set_total_writeback(StatOf(st, "total_writeback"));
  mem->set_total_pg_pg_in(StatOf(st, "total_pgpgin"));
  mem->set_total_pg_pg_out(StatOf(st, "total_pgpgout"));
  mem->set_total_pg_fault(StatOf(st, "total_pgfault"));
  mem->set_total_pg_maj_fault(StatOf(st, "total_pgmajfault"));
  mem->set_total_inactive_anon(StatOf(st, "total_inactive_anon"));
  mem->set_total_active_anon(StatOf(st, "total_active_anon"));
  mem->set_total_inactive_file(StatOf(st, "total_inactive_file"));
  mem->set_total_active_file(StatOf(st, "total_active_file"));
  mem->set_total_unevictable(StatOf(st, "total_unevictable"));
  mem->mutable_usage()->set_usage(s.memory.usage);
  mem->mutable_usage()->set_limit(s.memory.limit);
  mem->mutable_usage()->set_max(s.memory.max_usage);
  mem->mutable_usage()->set_failcnt(s.memory.failcnt);
  mem->mutable_swap()->set_usage(s.memory.swap_usage);
  mem->mutable_swap()->set_limit(s.memory.swap_limit);
  mem->mutable_kernel()->set_usage(s.memory.kernel_usage);
  m.mutable_memory_oom_control()->set_oom_kill(StatOf(s.memory.events, "oom_kill"));
  out->set_type_url(m.GetTypeName());
  m.SerializeToString(out->mutable_value());
}

}  // namespace

// ---- TaskService --------------------------------------------------------------------------

struct TaskService::Entry {
  std::shared_ptr<oci::Container> c;
  std::string bundle;
  bool rootfs_mounted = false;
  oci::StdioSpec stdio;
  // Wait callers per exec id ("" = init).
  std::map<std::string, std::vector<ttrpc::TypedResponder<task::WaitResponse>>> waiters
      GUARDED_BY(TaskService::mu_);
  // Exec ids ("" = init) whose Start is running, and exits seen meanwhile: their /tasks/exit
  // is held back until Start has published /tasks/start (containerd's shim holds eventSendMu
  // across Start for the same reason). dockerd drops an init exit that arrives before it knows
  // the pid, and `docker run` then hangs.
  std::set<std::string> starting GUARDED_BY(TaskService::mu_);
  std::map<std::string, oci::Exit> held_exits GUARDED_BY(TaskService::mu_);
};

TaskService::TaskService(oci::RuntimeEnv* env, ttrpc::EventLoop& loop, ttrpc::Server& server,
                         Publisher& publisher, ShimConfig config)
    : env_(env), loop_(loop), server_(server), publisher_(publisher), config_(std::move(config)) {}

TaskService::~TaskService() {
  std::map<std::string, std::shared_ptr<Entry>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(containers_);
  }
  for (auto& [id, e] : all) {
    e->c.reset();  // kills and force-deletes a container still there
    if (e->rootfs_mounted) (void)UnmountAll(e->bundle + "/rootfs", MNT_DETACH);
  }
}

template <typename Req, typename Resp>
Status TaskService::RegisterWork(const char* method, Result<Resp> (TaskService::*fn)(const Req&)) {
  return server_.RegisterTypedAsync<Req, Resp>(
      kService, method,
      [this, fn](const ttrpc::Context&, const Req& req, ttrpc::TypedResponder<Resp> r) {
        pool_.Submit([this, fn, req, r] {
          Result<Resp> res = (this->*fn)(req);
          if (res) {
            r.Reply(*res);
          } else {
            r.Fail(res.error());
          }
        });
      });
}

Status TaskService::Register() {
  RETURN_IF_ERROR(RegisterWork("Create", &TaskService::Create));
  RETURN_IF_ERROR(RegisterWork("Start", &TaskService::Start));
  RETURN_IF_ERROR(RegisterWork("Delete", &TaskService::Delete));
  RETURN_IF_ERROR(RegisterWork("Pids", &TaskService::Pids));
  RETURN_IF_ERROR(RegisterWork("Pause", &TaskService::Pause));
  RETURN_IF_ERROR(RegisterWork("Resume", &TaskService::Resume));
  RETURN_IF_ERROR(RegisterWork("Kill", &TaskService::Kill));
  RETURN_IF_ERROR(RegisterWork("Exec", &TaskService::Exec));
  RETURN_IF_ERROR(RegisterWork("ResizePty", &TaskService::ResizePty));
  RETURN_IF_ERROR(RegisterWork("CloseIO", &TaskService::CloseIO));
  RETURN_IF_ERROR(RegisterWork("Update", &TaskService::Update));
  RETURN_IF_ERROR(RegisterWork("Stats", &TaskService::Stats));
  RETURN_IF_ERROR((server_.RegisterTyped<task::StateRequest, task::StateResponse>(
      kService, "State",
      [this](const ttrpc::Context&, const task::StateRequest& req) { return State(req); })));
  RETURN_IF_ERROR((server_.RegisterTyped<task::ConnectRequest, task::ConnectResponse>(
      kService, "Connect",
      [this](const ttrpc::Context&, const task::ConnectRequest& req) { return Connect(req); })));
  RETURN_IF_ERROR((server_.RegisterTyped<task::ShutdownRequest, Empty>(
      kService, "Shutdown",
      [this](const ttrpc::Context&, const task::ShutdownRequest& req) { return Shutdown(req); })));
  RETURN_IF_ERROR((server_.RegisterTyped<task::CheckpointTaskRequest, Empty>(
      kService, "Checkpoint",
      [](const ttrpc::Context&, const task::CheckpointTaskRequest&) -> Result<Empty> {
        return std::unexpected(Unimplemented("checkpoint is not supported by the berth shim"));
      })));
  RETURN_IF_ERROR((server_.RegisterTypedAsync<task::WaitRequest, task::WaitResponse>(
      kService, "Wait",
      [this](const ttrpc::Context&, const task::WaitRequest& req,
             ttrpc::TypedResponder<task::WaitResponse> r) { Wait(req, std::move(r)); })));
  return Status();
}

Result<std::shared_ptr<TaskService::Entry>> TaskService::Get(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end() || !it->second->c) {
    return std::unexpected(NotFound("container " + id + ": container not created"));
  }
  return it->second;
}

void TaskService::HandleExit(const std::string& id, const std::string& exec_id,
                             const oci::Exit& exit) {
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it != containers_.end() && it->second->starting.contains(exec_id)) {
      it->second->held_exits[exec_id] = exit;  // Start publishes it after /tasks/start
      return;
    }
  }
  ev::TaskExit e;
  e.set_container_id(id);
  e.set_id(exec_id.empty() ? id : exec_id);
  e.set_pid(static_cast<uint32_t>(exit.pid));
  e.set_exit_status(static_cast<uint32_t>(exit.status));
  SetTime(exit.time, e.mutable_exited_at());
  publisher_.Publish("/tasks/exit", e);

  std::vector<ttrpc::TypedResponder<task::WaitResponse>> waiters;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it != containers_.end()) {
      auto w = it->second->waiters.find(exec_id);
      if (w != it->second->waiters.end()) {
        waiters = std::move(w->second);
        it->second->waiters.erase(w);
      }
    }
  }
  task::WaitResponse resp;
  resp.set_exit_status(static_cast<uint32_t>(exit.status));
  SetTime(exit.time, resp.mutable_exited_at());
  for (auto& r : waiters) r.Reply(resp);
}

Result<task::CreateTaskResponse> TaskService::Create(const task::CreateTaskRequest& req) {
  const std::string& id = req.id();
  if (!req.checkpoint().empty() || !req.parent_checkpoint().empty()) {
    return std::unexpected(Unimplemented("restoring a checkpoint is not supported"));
  }
  {
    std::lock_guard lock(mu_);
    if (containers_.contains(id)) {
      return std::unexpected(AlreadyExists("container " + id + ": already exists"));
    }
    containers_[id] = std::make_shared<Entry>();  // reserves the id
  }
  auto fail = [&](Status st) -> Result<task::CreateTaskResponse> {
    std::lock_guard lock(mu_);
    containers_.erase(id);
    return std::unexpected(std::move(st));
  };
  std::string bundle = req.bundle();

  // What `start` read from stdin, then Create's own options (runtime v1 sends the container's
  // RuncOptions to `start` and a task's CreateOptions here; they add up).
  RuncOptions opts;
  if (auto text = ReadFile(bundle + "/options.json")) {
    auto o = OptionsFromJson(*text);
    if (!o) return fail(o.error());
    opts = *o;
  }
  if (!req.options().type_url().empty()) {
    auto o = DecodeOptions(req.options(), opts);
    if (!o) return fail(o.error());
    opts = *o;
    (void)WriteFileReplace(bundle + "/options.json", OptionsToJson(opts), 0600);
  }

  oci::RuntimeOptions ro;
  if (!opts.binary_name.empty()) ro.binary = opts.binary_name;
  ro.root = (opts.root.empty() ? config_.default_runtime_root : opts.root) + "/" + config_.ns;
  ro.systemd_cgroup = opts.systemd_cgroup;
  ro.probe_version = false;  // one runtime start less per container
  ro.log_path = bundle + "/log.json";
  auto rt = oci::CliRuntime::Create(env_->reaper(), ro, env_->cgroups());
  if (!rt && rt.error().code() == Code::kNotFound) {
    // What containerd's shims (go-runc) answer when the runtime binary is missing: the exec
    // fails before runc could write its log.
    return fail(Status(Code::kUnknown,
                       "OCI runtime create failed: unable to retrieve OCI runtime error (open " +
                           ro.log_path + ": no such file or directory): exec: \"" + ro.binary +
                           "\": executable file not found in $PATH"));
  }
  if (!rt) return fail(rt.error());
  (void)WriteFileReplace(bundle + "/runtime", opts.binary_name, 0600);

  std::vector<berth::Mount> mounts;
  for (const auto& m : req.rootfs()) {
    mounts.push_back({m.type(), m.source(), {m.options().begin(), m.options().end()}});
  }
  std::string rootfs = bundle + "/rootfs";
  if (!mounts.empty()) {
    Status st = EnsureDir(rootfs, 0711);
    if (st.ok()) st = MountAll(mounts, rootfs);
    if (!st.ok()) return fail(st);
  }

  oci::ContainerConfig cfg;
  cfg.id = id;
  cfg.bundle = bundle;
  cfg.ns = config_.ns;
  cfg.stdio = oci::StdioSpec{req.stdin(), req.stdout(), req.stderr(), req.terminal()};
  cfg.no_pivot = opts.no_pivot_root;
  cfg.no_new_keyring = opts.no_new_keyring;
  if (opts.io_uid) cfg.io_uid = opts.io_uid;
  if (opts.io_gid) cfg.io_gid = opts.io_gid;
  oci::ContainerEvents events;
  events.on_exit = [this, id](const std::string& exec_id, const oci::Exit& exit) {
    HandleExit(id, exec_id, exit);
  };
  events.on_oom = [this, id] {
    ev::TaskOOM e;
    e.set_container_id(id);
    publisher_.Publish("/tasks/oom", e);
  };
  auto c = oci::Container::Create(env_, std::shared_ptr<oci::OciRuntime>(std::move(*rt)), cfg,
                                  std::move(events));
  if (!c) {
    if (!mounts.empty()) (void)UnmountAll(rootfs, MNT_DETACH);
    return fail(c.error());
  }
  pid_t pid = (*c)->pid();
  {
    std::lock_guard lock(mu_);
    auto& e = containers_[id];
    e->c = std::shared_ptr<oci::Container>(std::move(*c));
    e->bundle = bundle;
    e->rootfs_mounted = !mounts.empty();
    e->stdio = cfg.stdio;
  }
  ev::TaskCreate e;
  e.set_container_id(id);
  e.set_bundle(bundle);
  *e.mutable_rootfs() = req.rootfs();
  e.mutable_io()->set_stdin(req.stdin());
  e.mutable_io()->set_stdout(req.stdout());
  e.mutable_io()->set_stderr(req.stderr());
  e.mutable_io()->set_terminal(req.terminal());
  e.set_pid(static_cast<uint32_t>(pid));
  publisher_.Publish("/tasks/create", e);

  task::CreateTaskResponse resp;
  resp.set_pid(static_cast<uint32_t>(pid));
  return resp;
}

Result<task::StartResponse> TaskService::Start(const task::StartRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  {
    std::lock_guard lock(mu_);
    e->starting.insert(req.exec_id());
  }
  // Ends the hold on exits (see Entry::starting) and publishes one that came meanwhile.
  auto release_exit = [&] {
    std::optional<oci::Exit> held;
    {
      std::lock_guard lock(mu_);
      e->starting.erase(req.exec_id());
      if (auto it = e->held_exits.find(req.exec_id()); it != e->held_exits.end()) {
        held = it->second;
        e->held_exits.erase(it);
      }
    }
    if (held) HandleExit(req.id(), req.exec_id(), *held);
  };
  auto started = e->c->Start(req.exec_id());
  if (!started) {
    release_exit();
    return std::unexpected(started.error());
  }
  pid_t pid = *started;
  if (req.exec_id().empty()) {
    ev::TaskStart ev;
    ev.set_container_id(req.id());
    ev.set_pid(static_cast<uint32_t>(pid));
    publisher_.Publish("/tasks/start", ev);
  } else {
    ev::TaskExecStarted ev;
    ev.set_container_id(req.id());
    ev.set_exec_id(req.exec_id());
    ev.set_pid(static_cast<uint32_t>(pid));
    publisher_.Publish("/tasks/exec-started", ev);
  }
  release_exit();
  task::StartResponse resp;
  resp.set_pid(static_cast<uint32_t>(pid));
  return resp;
}

Result<task::DeleteResponse> TaskService::Delete(const task::DeleteRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(oci::Exit exit, e->c->Delete(req.exec_id()));
  task::DeleteResponse resp;
  resp.set_pid(static_cast<uint32_t>(exit.pid));
  resp.set_exit_status(static_cast<uint32_t>(exit.status));
  SetTime(exit.time, resp.mutable_exited_at());
  if (!req.exec_id().empty()) return resp;

  if (e->rootfs_mounted) {
    Status st = UnmountAll(e->bundle + "/rootfs", MNT_DETACH);
    if (!st.ok()) spdlog::warn("delete {}: {}", req.id(), st.ToString());
  }
  {
    std::lock_guard lock(mu_);
    containers_.erase(req.id());
  }
  ev::TaskDelete ev;
  ev.set_container_id(req.id());
  ev.set_pid(resp.pid());
  ev.set_exit_status(resp.exit_status());
  *ev.mutable_exited_at() = resp.exited_at();
  publisher_.Publish("/tasks/delete", ev);
  return resp;
}

Result<task::PidsResponse> TaskService::Pids(const task::PidsRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(auto procs, e->c->Pids());
  task::PidsResponse resp;
  for (const auto& p : procs) {
    auto* pi = resp.add_processes();
    pi->set_pid(static_cast<uint32_t>(p.pid));
    if (!p.exec_id.empty()) {
      containerd::runc::v1::ProcessDetails d;
      d.set_exec_id(p.exec_id);
      pi->mutable_info()->set_type_url(d.GetTypeName());
      d.SerializeToString(pi->mutable_info()->mutable_value());
    }
  }
  return resp;
}

Result<Empty> TaskService::Pause(const task::PauseRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->c->Pause());
  ev::TaskPaused ev;
  ev.set_container_id(req.id());
  publisher_.Publish("/tasks/paused", ev);
  return Empty();
}

Result<Empty> TaskService::Resume(const task::ResumeRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->c->Resume());
  ev::TaskResumed ev;
  ev.set_container_id(req.id());
  publisher_.Publish("/tasks/resumed", ev);
  return Empty();
}

Result<Empty> TaskService::Kill(const task::KillRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->c->Kill(req.exec_id(), static_cast<int>(req.signal()), req.all()));
  return Empty();
}

Result<Empty> TaskService::Exec(const task::ExecProcessRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  if (req.exec_id().empty()) return std::unexpected(InvalidArgument("exec id is required"));
  // The spec Any holds an OCI process as JSON (typeurl's encoding of non-proto Go types).
  RETURN_IF_ERROR(e->c->Exec(
      req.exec_id(), req.spec().value(),
      oci::StdioSpec{req.stdin(), req.stdout(), req.stderr(), req.terminal()}));
  ev::TaskExecAdded ev;
  ev.set_container_id(req.id());
  ev.set_exec_id(req.exec_id());
  publisher_.Publish("/tasks/exec-added", ev);
  return Empty();
}

Result<Empty> TaskService::ResizePty(const task::ResizePtyRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->c->ResizePty(req.exec_id(), static_cast<uint16_t>(req.width()),
                                  static_cast<uint16_t>(req.height())));
  return Empty();
}

Result<Empty> TaskService::CloseIO(const task::CloseIORequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  if (req.stdin()) RETURN_IF_ERROR(e->c->CloseIO(req.exec_id()));
  return Empty();
}

Result<Empty> TaskService::Update(const task::UpdateTaskRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  // specs.LinuxResources, JSON inside the Any.
  RETURN_IF_ERROR(e->c->Update(req.resources().value()));
  return Empty();
}

Result<task::StatsResponse> TaskService::Stats(const task::StatsRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(oci::CgroupStats s, e->c->Stats());
  task::StatsResponse resp;
  PackMetrics(s, resp.mutable_stats());
  return resp;
}

Result<task::StateResponse> TaskService::State(const task::StateRequest& req) {
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(oci::ProcessState st, e->c->State(req.exec_id()));
  task::StateResponse resp;
  resp.set_id(req.exec_id().empty() ? req.id() : req.exec_id());
  resp.set_exec_id(req.exec_id());
  resp.set_bundle(e->bundle);
  resp.set_pid(static_cast<uint32_t>(st.pid));
  resp.set_status(ToProto(st.status));
  resp.set_stdin(st.stdio.in);
  resp.set_stdout(st.stdio.out);
  resp.set_stderr(st.stdio.err);
  resp.set_terminal(st.stdio.terminal);
  resp.set_exit_status(static_cast<uint32_t>(st.exit_status));
  SetTime(st.exited_at, resp.mutable_exited_at());
  return resp;
}

void TaskService::Wait(const task::WaitRequest& req,
                       ttrpc::TypedResponder<task::WaitResponse> r) {
  std::lock_guard lock(mu_);
  auto it = containers_.find(req.id());
  if (it == containers_.end() || !it->second->c) {
    r.Fail(NotFound("container " + req.id() + ": container not created"));
    return;
  }
  auto st = it->second->c->State(req.exec_id());
  if (!st) {
    r.Fail(st.error());
    return;
  }
  // An exit is recorded before HandleExit runs; HandleExit takes mu_ to collect waiters, so a
  // waiter added here is either answered now or by HandleExit.
  if (st->status == oci::ProcessStatus::kStopped || st->status == oci::ProcessStatus::kDeleted) {
    task::WaitResponse resp;
    resp.set_exit_status(static_cast<uint32_t>(st->exit_status));
    SetTime(st->exited_at, resp.mutable_exited_at());
    r.Reply(resp);
    return;
  }
  it->second->waiters[req.exec_id()].push_back(std::move(r));
}

Result<task::ConnectResponse> TaskService::Connect(const task::ConnectRequest& req) {
  task::ConnectResponse resp;
  resp.set_shim_pid(static_cast<uint32_t>(::getpid()));
  resp.set_version("berth");
  std::lock_guard lock(mu_);
  auto it = containers_.find(req.id());
  if (it != containers_.end() && it->second->c) {
    resp.set_task_pid(static_cast<uint32_t>(it->second->c->pid()));
  }
  return resp;
}

Result<Empty> TaskService::Shutdown(const task::ShutdownRequest& req) {
  {
    std::lock_guard lock(mu_);
    if (!req.now() && !containers_.empty()) return Empty();
  }
  // Answer first, then stop: the posted closure runs after this reply is queued.
  loop_.Post([this] {
    if (on_shutdown_) on_shutdown_();
  });
  return Empty();
}

}  // namespace berth::shim
