#include "tasks/shim_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <google/protobuf/any.pb.h>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"
#include "common/validate.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "tasks/process.h"

namespace berth::tasks {
namespace task = containerd::task::v2;
namespace fsys = std::filesystem;
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr auto kCleanupTimeout = std::chrono::seconds(5);
constexpr auto kShutdownTimeout = std::chrono::seconds(3);
constexpr auto kConnectTimeout = std::chrono::seconds(5);

std::string Trim(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool IsExecutable(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

google::protobuf::Timestamp Now() {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  google::protobuf::Timestamp ts;
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int>(ns % 1000000000));
  return ts;
}

// The host gid that container gid 0 maps to (linux.gidMappings), 0 when the spec maps none.
// A spec that is not JSON maps none here; the runtime reports it when it reads config.json.
uint32_t RemappedRootGid(const std::string& spec) {
  // Most specs map nothing: skip parsing them (this runs on every task create).
  if (spec.find("\"gidMappings\"") == std::string::npos) return 0u;
  auto j = nlohmann::json::parse(spec, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return 0u;
  auto linux = j.find("linux");
  if (linux == j.end() || !linux->is_object()) return 0u;
  auto maps = linux->find("gidMappings");
  if (maps == linux->end() || !maps->is_array()) return 0u;
  for (const auto& m : *maps) {
    if (!m.is_object()) continue;
    auto cid = m.find("containerID"), hid = m.find("hostID");
    if (cid != m.end() && cid->is_number_unsigned() && cid->get<uint64_t>() == 0 &&
        hid != m.end() && hid->is_number_unsigned() && hid->get<uint64_t>() <= UINT32_MAX) {
      return static_cast<uint32_t>(hid->get<uint64_t>());
    }
  }
  return 0u;
}

// The bundle being created: removed unless released.
struct BundleGuard {
  Manager* m = nullptr;
  std::function<void()> undo;
  ~BundleGuard() {
    if (undo) undo();
  }
};

}  // namespace

Status Shim::Call(std::string_view method, const google::protobuf::MessageLite& req,
                  google::protobuf::MessageLite* resp,
                  std::optional<std::chrono::nanoseconds> timeout) {
  ttrpc::CallOptions opts;
  opts.timeout = timeout;
  opts.metadata.Set("containerd-namespace-ttrpc", ns_);
  return client_->Call(kTaskService, method, req, resp, opts);
}

void Shim::CallAsync(std::string_view method, const google::protobuf::MessageLite& req,
                     std::function<void(Result<std::string>)> done) {
  ttrpc::CallOptions opts;
  opts.metadata.Set("containerd-namespace-ttrpc", ns_);
  client_->CallAsync(kTaskService, method, req.SerializeAsString(), opts, std::move(done));
}

uint64_t Shim::AddWaiter(const std::string& exec_id, WaitDone done) {
  uint64_t token;
  bool first;
  {
    std::lock_guard lock(wait_mu_);
    token = next_waiter_++;
    // A group exists exactly while its Task.Wait call is in flight.
    first = !waits_.contains(exec_id);
    waits_[exec_id].emplace(token, std::move(done));
    waiter_exec_.emplace(token, exec_id);
  }
  if (first) {
    task::WaitRequest req;
    req.set_id(id_);
    req.set_exec_id(exec_id);
    std::weak_ptr<Shim> weak = weak_from_this();
    CallAsync("Wait", req, [weak, exec_id](Result<std::string> r) {
      if (auto self = weak.lock()) self->FinishWaits(exec_id, std::move(r));
    });
  }
  return token;
}

void Shim::CancelWait(uint64_t token) {
  std::lock_guard lock(wait_mu_);
  auto it = waiter_exec_.find(token);
  if (it == waiter_exec_.end()) return;
  auto group = waits_.find(it->second);
  if (group != waits_.end()) group->second.erase(token);
  // An empty group stays until its call ends, so a new waiter joins that call.
  waiter_exec_.erase(it);
}

void Shim::FinishWaits(const std::string& exec_id, Result<std::string> result) {
  std::map<uint64_t, WaitDone> group;
  {
    std::lock_guard lock(wait_mu_);
    auto it = waits_.find(exec_id);
    if (it == waits_.end()) return;
    group.swap(it->second);
    waits_.erase(it);
    for (const auto& [token, done] : group) waiter_exec_.erase(token);
  }
  for (auto& [token, done] : group) done(result);
}

Result<std::unique_ptr<Manager>> Manager::Create(ManagerConfig cfg, events::Exchange& exchange) {
  RETURN_IF_ERROR(EnsureDir(cfg.state_dir, 0711));
  RETURN_IF_ERROR(EnsureDir(cfg.work_dir, 0711));
  ASSIGN_OR_RETURN(auto loop, ttrpc::LoopThread::Start());
  return std::unique_ptr<Manager>(new Manager(std::move(cfg), exchange, std::move(loop)));
}

Manager::~Manager() {
  stopping_ = true;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Shim>> tasks;
  {
    std::lock_guard lock(mu_);
    tasks.swap(tasks_);
  }
  for (auto& [key, shim] : tasks) CloseShim(shim);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(cleanups_);
  }
  for (auto& t : threads) t.join();
  // Clients close on the loop: they go before it does (a Shim may be the last owner).
  for (auto& [key, shim] : tasks) shim->client_.reset();
  tasks.clear();
  loop_.reset();
}

Result<std::string> Manager::ResolveBinary(const std::string& runtime) {
  {
    std::lock_guard lock(mu_);
    if (auto it = cfg_.binaries.find(runtime); it != cfg_.binaries.end()) return it->second;
    if (auto it = resolved_.find(runtime); it != resolved_.end()) return it->second;
  }
  if (!runtime.empty() && runtime[0] == '/') {
    if (!IsExecutable(runtime)) return std::unexpected(NotFound("runtime " + runtime + " not found"));
    return runtime;
  }
  std::string self_dir = fsys::path(cfg_.publish_binary).parent_path().string();
  std::vector<std::string> path_dirs;
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t colon = p.find(':', pos);
    if (colon == std::string::npos) colon = p.size();
    if (colon > pos) path_dirs.push_back(p.substr(pos, colon - pos));
    pos = colon + 1;
  }
  std::string name;
  std::vector<std::string> dirs;
  bool own = false;
  for (const char* r : kOwnShimRuntimes) own = own || runtime == r;
  if (own) {
    // Ours: the shim installed (or built) with this berthd comes first.
    name = kOwnShimName;
    dirs.push_back(self_dir);
    dirs.insert(dirs.end(), path_dirs.begin(), path_dirs.end());
  } else {
    // io.containerd.<name>.<version> → containerd-shim-<name>-<version>
    std::vector<std::string> parts;
    pos = 0;
    while (true) {
      size_t dot = runtime.find('.', pos);
      parts.push_back(runtime.substr(pos, dot - pos));
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
    if (parts.size() < 2) {
      return std::unexpected(InvalidArgument("invalid runtime name " + runtime +
                                             ", correct runtime name should be either format like "
                                             "`io.containerd.runc.v1` or a full path to the binary"));
    }
    name = "containerd-shim-" + parts[parts.size() - 2] + "-" + parts[parts.size() - 1];
    dirs = path_dirs;
    dirs.push_back(self_dir);
  }
  for (const auto& d : dirs) {
    std::string cand = d + "/" + name;
    if (IsExecutable(cand)) {
      std::lock_guard lock(mu_);
      resolved_[runtime] = cand;
      return cand;
    }
  }
  return std::unexpected(NotFound("runtime \"" + runtime + "\" binary not installed \"" + name +
                                  "\": file does not exist"));
}

std::vector<std::string> Manager::ShimEnv() const {
  std::vector<std::string> env = {"TTRPC_ADDRESS=" + cfg_.ttrpc_address};
  if (!cfg_.shim_run_dir.empty()) env.push_back("BERTH_SHIM_RUN_DIR=" + cfg_.shim_run_dir);
  return env;
}

void Manager::WatchLog(const std::shared_ptr<Shim>& shim, int fd) {
  std::string tag = shim->ns_ + "/" + shim->id_;
  // Closures capture the loop, not the manager: ~Manager resets loop_ while the loop thread
  // still runs what was posted before it stops.
  ttrpc::EventLoop* loop = &loop_->loop();
  loop->Post([loop, fd, tag] {
    auto buffer = std::make_shared<std::string>();
    Status s = loop->Watch(fd, EPOLLIN, [fd, tag, buffer](uint32_t) {
      char buf[4096];
      while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        buffer->append(buf, static_cast<size_t>(n));
      }
      size_t nl;
      while ((nl = buffer->find('\n')) != std::string::npos) {
        spdlog::info("shim {}: {}", tag, buffer->substr(0, nl));
        buffer->erase(0, nl + 1);
      }
      if (buffer->size() > 65536) buffer->clear();
    });
    if (!s.ok()) spdlog::warn("watch shim log {}: {}", tag, s.ToString());
  });
}

void Manager::CloseShim(const std::shared_ptr<Shim>& shim) {
  shim->deleting_ = true;
  if (shim->client_) shim->client_->Close();
  int fd = shim->log_fd_;
  shim->log_fd_ = -1;
  if (fd >= 0) {
    // Unwatch and close on the loop thread, after any pending read. The task captures the loop,
    // not `this`: ~Manager closes shims and then resets loop_, whose thread runs what is still
    // posted while loop_ already reads null (berthd crashed on SIGTERM with tasks running).
    auto* loop = &loop_->loop();
    if (!loop->Post([loop, fd] {
          loop->Unwatch(fd);
          ::close(fd);
        })) {
      ::close(fd);
    }
  }
}

Status Manager::Connect(const std::shared_ptr<Shim>& shim, const std::string& address) {
  ttrpc::ClientOptions copts;
  std::weak_ptr<Shim> weak = shim;
  copts.on_close = [this, weak](const Status&) { OnDisconnect(weak); };
  auto client = ttrpc::Client::Connect(loop_->loop(), address, std::move(copts));
  if (!client) return client.error();
  shim->client_ = std::move(*client);
  return Status::Ok();
}

Result<task::DeleteResponse> Manager::RunDeleteCommand(const std::string& binary,
                                                       const std::string& ns,
                                                       const std::string& id,
                                                       const std::string& bundle) {
  std::vector<std::string> argv = {binary,         "-namespace",  ns,
                                   "-address",     cfg_.grpc_address, "-publish-binary",
                                   cfg_.publish_binary, "-id",    id,
                                   "-bundle",      bundle,        "delete"};
  ASSIGN_OR_RETURN(CommandResult r,
                   RunCommand(argv, bundle, ShimEnv(), "", kCleanupTimeout));
  if (r.exit_code != 0) {
    return std::unexpected(Internal("shim delete " + id + ": exit " +
                                    std::to_string(r.exit_code) + ": " + Trim(r.err)));
  }
  task::DeleteResponse resp;
  if (!resp.ParseFromString(r.out)) return std::unexpected(Internal("shim delete: bad response"));
  return resp;
}

void Manager::RemoveBundle(const std::string& ns, const std::string& id) {
  std::string bundle = cfg_.state_dir + "/" + ns + "/" + id;
  std::string rootfs = bundle + "/rootfs";
  // Unmount whatever is still stacked on rootfs.
  for (int i = 0; i < 16 && ::umount2(rootfs.c_str(), MNT_DETACH) == 0; ++i) {
  }
  std::error_code ec;
  for (const std::string& dir : {bundle, cfg_.work_dir + "/" + ns + "/" + id}) {
    if (!fsys::exists(dir, ec)) continue;
    // Renamed first, so a crash part way leaves a dot-dir (swept by Recover), never a bundle
    // that looks half-created.
    std::string hidden = fsys::path(dir).parent_path().string() + "/." + id;
    RemoveTree(hidden);
    if (::rename(dir.c_str(), hidden.c_str()) != 0) hidden = dir;
    RemoveTree(hidden);
  }
}

void Manager::RemoveTree(const std::string& dir) {
  std::error_code ec;
  if (!fsys::exists(fsys::symlink_status(dir, ec))) return;
  std::string prefix = dir + "/";
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    // Field 5 is the mount point (octal escapes for blanks; our paths have none).
    std::istringstream fields(line);
    std::string f, mp;
    for (int i = 0; i < 5 && fields >> f; ++i) mp = f;
    if (mp == dir || mp.starts_with(prefix)) {
      // Never recurse into a mounted snapshot: that would delete image data.
      spdlog::warn("not removing {}: {} is still mounted", dir, mp);
      return;
    }
  }
  fsys::remove_all(dir, ec);
  if (ec) spdlog::warn("remove {}: {}", dir, ec.message());
}

void Manager::PublishExitDelete(const std::string& ns, const std::string& id, uint32_t pid,
                                uint32_t exit_status,
                                const google::protobuf::Timestamp& exited_at) {
  containerd::events::TaskExit exit;
  exit.set_container_id(id);
  exit.set_id(id);
  exit.set_pid(pid);
  exit.set_exit_status(exit_status);
  *exit.mutable_exited_at() = exited_at;
  containerd::events::TaskDelete del;
  del.set_container_id(id);
  del.set_pid(pid);
  del.set_exit_status(exit_status);
  *del.mutable_exited_at() = exited_at;
  for (auto [topic, msg] : std::initializer_list<std::pair<const char*, const google::protobuf::Message*>>{
           {"/tasks/exit", &exit}, {"/tasks/delete", &del}}) {
    events::Envelope env;
    env.ns = ns;
    env.topic = topic;
    env.type_url = msg->GetDescriptor()->full_name();
    env.payload = msg->SerializeAsString();
    if (Status s = exchange_.Publish(std::move(env)); !s.ok()) {
      spdlog::warn("publish {}: {}", topic, s.ToString());
    }
  }
}

// The shim died (or was unreachable at recovery): delete command, events, bundle.
void Manager::CleanupDead(const std::shared_ptr<Shim>& shim) {
  spdlog::info("cleaning up after shim disconnected id={} namespace={}", shim->id_, shim->ns_);
  uint32_t pid = shim->pid_, status = 255;
  google::protobuf::Timestamp at = Now();
  if (!shim->binary_.empty()) {
    auto d = RunDeleteCommand(shim->binary_, shim->ns_, shim->id_, shim->bundle_);
    if (d) {
      if (d->pid() != 0) pid = d->pid();
      status = d->exit_status();
      if (d->has_exited_at()) at = d->exited_at();
    } else {
      spdlog::warn("shim delete {}: {}", shim->id_, d.error().ToString());
    }
  }
  PublishExitDelete(shim->ns_, shim->id_, pid, status, at);
  RemoveBundle(shim->ns_, shim->id_);
}

void Manager::OnDisconnect(std::weak_ptr<Shim> weak) {
  if (stopping_) return;
  auto shim = weak.lock();
  if (!shim || shim->deleting_) return;
  {
    std::lock_guard lock(mu_);
    auto it = tasks_.find({shim->ns_, shim->id_});
    if (it == tasks_.end() || it->second != shim) return;
    tasks_.erase(it);
    // Runs off the loop thread: the delete command takes a while.
    cleanups_.emplace_back([this, shim] {
      CloseShim(shim);
      CleanupDead(shim);
    });
  }
}

Result<std::shared_ptr<Shim>> Manager::CreateTask(const CreateOptions& o) {
  RETURN_IF_ERROR(ValidateIdentifier(o.ns));
  RETURN_IF_ERROR(ValidateIdentifier(o.id));
  ASSIGN_OR_RETURN(std::string binary, ResolveBinary(o.runtime));
  {
    std::lock_guard lock(mu_);
    if (tasks_.contains({o.ns, o.id})) {
      return std::unexpected(AlreadyExists("task " + o.id + ": already exists"));
    }
  }
  std::string nsdir = cfg_.state_dir + "/" + o.ns;
  std::string bundle = nsdir + "/" + o.id;
  std::string work = cfg_.work_dir + "/" + o.ns + "/" + o.id;
  RETURN_IF_ERROR(EnsureDir(nsdir, 0711));
  RETURN_IF_ERROR(EnsureDir(cfg_.work_dir + "/" + o.ns, 0711));
  uint32_t remapped_gid = RemappedRootGid(o.spec);
  if (::mkdir(bundle.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return std::unexpected(AlreadyExists("bundle " + bundle + ": already exists"));
    }
    return std::unexpected(StatusFromErrno(errno, "mkdir " + bundle));
  }
  if (remapped_gid != 0) {
    // A user-namespaced container's runtime mounts rootfs/ as the container's root (a host id):
    // its group may traverse the bundle, nobody else may (containerd's bundle_linux.go).
    if (::chown(bundle.c_str(), static_cast<uid_t>(-1), remapped_gid) != 0 ||
        ::chmod(bundle.c_str(), 0710) != 0) {
      Status st = StatusFromErrno(errno, "bundle permissions for gid " +
                                             std::to_string(remapped_gid) + " on " + bundle);
      ::rmdir(bundle.c_str());
      return std::unexpected(st);
    }
  }
  auto shim = std::make_shared<Shim>();
  shim->ns_ = o.ns;
  shim->id_ = o.id;
  shim->bundle_ = bundle;
  shim->runtime_ = o.runtime;
  bool started = false;
  BundleGuard guard;
  guard.undo = [&] {
    if (shim->client_ && !shim->client_->closed()) {
      // A connected shim only exits when told to (containerd's cleanupShim).
      shim->deleting_ = true;
      task::DeleteRequest dreq;
      dreq.set_id(o.id);
      task::DeleteResponse dresp;
      (void)shim->Call("Delete", dreq, &dresp, kCleanupTimeout);
      task::ShutdownRequest sreq;
      sreq.set_id(o.id);
      google::protobuf::Empty empty;
      (void)shim->Call("Shutdown", sreq, &empty, kShutdownTimeout);
    }
    CloseShim(shim);
    if (started) {
      auto d = RunDeleteCommand(binary, o.ns, o.id, bundle);
      if (!d) spdlog::warn("cleanup shim {}: {}", o.id, d.error().ToString());
    }
    RemoveBundle(o.ns, o.id);
  };

  std::error_code ec;
  fsys::remove_all(work, ec);
  if (::mkdir(work.c_str(), 0711) != 0) return std::unexpected(StatusFromErrno(errno, "mkdir " + work));
  if (::symlink(work.c_str(), (bundle + "/work").c_str()) != 0) {
    return std::unexpected(StatusFromErrno(errno, "symlink work"));
  }
  if (::mkdir((bundle + "/rootfs").c_str(), 0711) != 0) {
    return std::unexpected(StatusFromErrno(errno, "mkdir rootfs"));
  }
  RETURN_IF_ERROR(WriteFileReplace(bundle + "/config.json", o.spec, 0644));
  std::string logp = bundle + "/log";
  if (::mkfifo(logp.c_str(), 0700) != 0) return std::unexpected(StatusFromErrno(errno, "mkfifo log"));
  int logfd = ::open(logp.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (logfd < 0) return std::unexpected(StatusFromErrno(errno, "open log fifo"));
  shim->log_fd_ = logfd;
  WatchLog(shim, logfd);

  std::string stdin_data;
  if (const auto& so = o.start_options ? o.start_options : o.options) {
    google::protobuf::Any any;
    any.set_type_url(so->type_url);
    any.set_value(so->value);
    stdin_data = any.SerializeAsString();
  }
  std::vector<std::string> argv = {binary,        "-namespace",       o.ns,
                                   "-address",    cfg_.grpc_address,  "-publish-binary",
                                   cfg_.publish_binary, "-id",        o.id,
                                   "start"};
  // Before `start`: recovery after a crash in the middle runs this binary's `delete`.
  shim->binary_ = binary;
  RETURN_IF_ERROR(WriteFileReplace(bundle + "/shim-binary-path", binary, 0600));
  RETURN_IF_ERROR(WriteFileReplace(bundle + "/runtime", o.runtime, 0600));
  started = true;  // from here on, a failed start may have left a shim behind
  std::vector<std::string> env = ShimEnv();
  env.push_back("GOMAXPROCS=2");
  ASSIGN_OR_RETURN(CommandResult r, RunCommand(argv, bundle, env, stdin_data, kStartTimeout));
  if (r.exit_code != 0) {
    return std::unexpected(Internal(binary + ": " + Trim(r.err.empty() ? r.out : r.err) +
                                    ": exit status " + std::to_string(r.exit_code)));
  }
  std::string address = Trim(r.out);
  RETURN_IF_ERROR(Connect(shim, address));

  task::CreateTaskRequest creq;
  creq.set_id(o.id);
  creq.set_bundle(bundle);
  for (const auto& m : o.rootfs) *creq.add_rootfs() = m;
  creq.set_terminal(o.terminal);
  creq.set_stdin(o.stdin_path);
  creq.set_stdout(o.stdout_path);
  creq.set_stderr(o.stderr_path);
  if (o.options) {
    creq.mutable_options()->set_type_url(o.options->type_url);
    creq.mutable_options()->set_value(o.options->value);
  }
  task::CreateTaskResponse cresp;
  if (Status s = shim->Call("Create", creq, &cresp); !s.ok()) {
    // containerd reads a shim's error back into its error classes; one of no known class keeps
    // the class name, so its message ends in ": unknown" (errdefs.FromGRPC).
    if (s.code() == Code::kUnknown) s = Status(Code::kUnknown, s.message() + ": unknown");
    // containerd's runtime v2 task manager says which step failed; its v1 runtime does not.
    if (o.runtime == kRuntimeV1Linux) return std::unexpected(s);
    return std::unexpected(s.Wrap("failed to create shim task"));
  }
  shim->pid_ = cresp.pid();
  task::ConnectRequest conn;
  conn.set_id(o.id);
  task::ConnectResponse connr;
  RETURN_IF_ERROR(shim->Call("Connect", conn, &connr, kConnectTimeout));
  {
    std::lock_guard lock(mu_);
    if (tasks_.contains({o.ns, o.id})) {
      return std::unexpected(AlreadyExists("task " + o.id + ": already exists"));
    }
    tasks_[{o.ns, o.id}] = shim;
  }
  guard.undo = nullptr;
  return shim;
}

Result<std::shared_ptr<Shim>> Manager::Get(const std::string& ns, const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = tasks_.find({ns, id});
  if (it == tasks_.end()) {
    return std::unexpected(NotFound("no running task found: task " + id + " not found"));
  }
  return it->second;
}

std::vector<std::shared_ptr<Shim>> Manager::List(const std::string& ns) const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Shim>> out;
  for (const auto& [key, shim] : tasks_) {
    if (ns.empty() || key.first == ns) out.push_back(shim);
  }
  return out;
}

Result<task::DeleteResponse> Manager::Delete(const std::string& ns, const std::string& id) {
  ASSIGN_OR_RETURN(std::shared_ptr<Shim> shim, Get(ns, id));
  task::DeleteRequest dreq;
  dreq.set_id(id);
  task::DeleteResponse dresp;
  Status s = shim->Call("Delete", dreq, &dresp);
  if (!s.ok() && s.code() != Code::kNotFound && s.code() != Code::kUnavailable) {
    return std::unexpected(s);
  }
  shim->deleting_ = true;
  {
    std::lock_guard lock(mu_);
    auto it = tasks_.find({ns, id});
    if (it != tasks_.end() && it->second == shim) tasks_.erase(it);
  }
  task::ShutdownRequest sreq;
  sreq.set_id(id);
  google::protobuf::Empty empty;
  // The shim exits while answering: a closed connection is success.
  (void)shim->Call("Shutdown", sreq, &empty, kShutdownTimeout);
  CloseShim(shim);
  RemoveBundle(ns, id);
  if (!s.ok()) {
    // Gone before we could ask: report what the delete command knows.
    dresp.set_exit_status(255);
    *dresp.mutable_exited_at() = Now();
  }
  return dresp;
}

void Manager::Recover(
    const std::function<bool(const std::string&, const std::string&)>& container_exists) {
  // Leftovers first: hidden dirs of a RemoveBundle cut short, work dirs without a bundle.
  std::vector<std::pair<std::string, std::string>> bundles;  // (ns, id)
  std::error_code ec;
  for (const auto& nsent : fsys::directory_iterator(cfg_.state_dir, ec)) {
    if (!nsent.is_directory()) continue;
    std::string ns = nsent.path().filename().string();
    if (ns.starts_with(".")) continue;
    std::error_code ec2;
    for (const auto& ent : fsys::directory_iterator(nsent.path(), ec2)) {
      std::string id = ent.path().filename().string();
      if (id.starts_with(".")) {
        RemoveTree(ent.path().string());
      } else if (ent.is_directory()) {
        bundles.emplace_back(ns, id);
      }
    }
  }
  for (const auto& nsent : fsys::directory_iterator(cfg_.work_dir, ec)) {
    if (!nsent.is_directory()) continue;
    std::string ns = nsent.path().filename().string();
    std::error_code ec2;
    for (const auto& ent : fsys::directory_iterator(nsent.path(), ec2)) {
      std::string id = ent.path().filename().string();
      if (id.starts_with(".") || !fsys::exists(cfg_.state_dir + "/" + ns + "/" + id)) {
        RemoveTree(ent.path().string());
      }
    }
  }
  // One bundle per worker at a time: a hung shim costs its own timeouts, not everyone's.
  size_t workers = std::min<size_t>(bundles.size(), 16);
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  auto start = std::chrono::steady_clock::now();
  for (size_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (size_t k; (k = next.fetch_add(1)) < bundles.size();) {
        RecoverOne(bundles[k].first, bundles[k].second, container_exists);
      }
    });
  }
  for (auto& t : pool) t.join();
  if (!bundles.empty()) {
    spdlog::info("recovery: {} bundles in {} ms", bundles.size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count());
  }
}

void Manager::RecoverOne(
    const std::string& ns, const std::string& id,
    const std::function<bool(const std::string&, const std::string&)>& container_exists) {
  std::string bundle = cfg_.state_dir + "/" + ns + "/" + id;
  auto shim = std::make_shared<Shim>();
  shim->ns_ = ns;
  shim->id_ = id;
  shim->bundle_ = bundle;
  auto bin = ReadFile(bundle + "/shim-binary-path");
  if (bin) shim->binary_ = Trim(*bin);
  auto runtime = ReadFile(bundle + "/runtime");
  shim->runtime_ = runtime ? Trim(*runtime) : std::string();
  auto addr = ReadFile(bundle + "/address");
  if (!bin || shim->binary_.empty() || !addr) {
    // A create cut short before the shim published its address (shim-binary-path is written
    // before `start`): its `delete` command undoes whatever it did (container, rootfs mount).
    spdlog::info("removing half-created bundle {}", bundle);
    if (addr && Connect(shim, Trim(*addr)).ok()) {
      shim->deleting_ = true;
      task::DeleteRequest dreq;
      dreq.set_id(id);
      task::DeleteResponse dresp;
      (void)shim->Call("Delete", dreq, &dresp, kCleanupTimeout);
      task::ShutdownRequest sreq;
      sreq.set_id(id);
      google::protobuf::Empty empty;
      (void)shim->Call("Shutdown", sreq, &empty, kShutdownTimeout);
    }
    CloseShim(shim);
    if (bin && !shim->binary_.empty()) {
      auto d = RunDeleteCommand(shim->binary_, ns, id, bundle);
      if (!d) spdlog::warn("shim delete {}: {}", id, d.error().ToString());
    }
    RemoveBundle(ns, id);
    return;
  }
  bool live = false;
  bool has_container = container_exists(ns, id);
  int logfd = ::open((bundle + "/log").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (logfd >= 0) {
    shim->log_fd_ = logfd;
    WatchLog(shim, logfd);
  }
  bool hung = false;
  if (Connect(shim, Trim(*addr)).ok()) {
    task::ConnectRequest creq;
    creq.set_id(id);
    task::ConnectResponse cresp;
    Status s = shim->Call("Connect", creq, &cresp, kConnectTimeout);
    // A shim without a task (berthd died before Task.Create answered) is not live.
    if (s.ok() && cresp.task_pid() != 0) {
      shim->pid_ = cresp.task_pid();
      live = true;
    }
    hung = s.code() == Code::kDeadlineExceeded;
  }
  if (live && !has_container) {
    // Its container record is gone: stop the task and let the shim go.
    spdlog::info("task {}/{} has no container; removing it", ns, id);
    task::KillRequest kreq;
    kreq.set_id(id);
    kreq.set_signal(9);
    kreq.set_all(true);
    google::protobuf::Empty empty;
    (void)shim->Call("Kill", kreq, &empty, kCleanupTimeout);
    task::WaitRequest wreq;
    wreq.set_id(id);
    task::WaitResponse wresp;
    (void)shim->Call("Wait", wreq, &wresp, std::chrono::seconds(10));
    {
      std::lock_guard lock(mu_);
      tasks_[{ns, id}] = shim;
    }
    auto d = Delete(ns, id);
    if (!d) spdlog::warn("remove task {}/{}: {}", ns, id, d.error().ToString());
    return;
  }
  if (live) {
    std::lock_guard lock(mu_);
    tasks_[{ns, id}] = shim;
    spdlog::info("recovered task {}/{} pid {}", ns, id, shim->pid_);
    return;
  }
  spdlog::info("shim of {}/{} is gone; cleaning up", ns, id);
  if (!hung && shim->client_ && !shim->client_->closed()) {
    // It answers but has no task (berthd died before Task.Create): ask it to go.
    task::ShutdownRequest sreq;
    sreq.set_id(id);
    google::protobuf::Empty empty;
    shim->deleting_ = true;
    (void)shim->Call("Shutdown", sreq, &empty, kShutdownTimeout);
  }
  shim->deleting_ = true;
  CloseShim(shim);
  CleanupDead(shim);
}

}  // namespace berth::tasks
