#include "tasks/shim_manager.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <google/protobuf/any.pb.h>

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
  // Each Shim's ttrpc client lives on loop_: destroy them now, not when this local goes out of
  // scope after loop_.reset() (berthd crashed on SIGTERM with tasks running).
  tasks.clear();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(cleanups_);
  }
  for (auto& t : threads) t.join();
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
  // io.containerd.<name>.<version> → containerd-shim-<name>-<version>
  std::vector<std::string> parts;
  size_t pos = 0;
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
  std::string name =
      "containerd-shim-" + parts[parts.size() - 2] + "-" + parts[parts.size() - 1];
  std::vector<std::string> dirs;
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  pos = 0;
  while (pos <= p.size()) {
    size_t colon = p.find(':', pos);
    if (colon == std::string::npos) colon = p.size();
    if (colon > pos) dirs.push_back(p.substr(pos, colon - pos));
    pos = colon + 1;
  }
  dirs.push_back(fsys::path(cfg_.publish_binary).parent_path().string());
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

void Manager::WatchLog(const std::shared_ptr<Shim>& shim, int fd) {
  std::string tag = shim->ns_ + "/" + shim->id_;
  loop_->loop().Post([this, fd, tag] {
    auto buffer = std::make_shared<std::string>();
    Status s = loop_->loop().Watch(fd, EPOLLIN, [fd, tag, buffer](uint32_t) {
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
                   RunCommand(argv, bundle, {"TTRPC_ADDRESS=" + cfg_.ttrpc_address}, "",
                              kCleanupTimeout));
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
    std::string hidden = fsys::path(dir).parent_path().string() + "/." + id;
    fsys::remove_all(hidden, ec);
    if (::rename(dir.c_str(), hidden.c_str()) != 0) hidden = dir;
    fsys::remove_all(hidden, ec);
    if (ec) spdlog::warn("remove {}: {}", hidden, ec.message());
  }
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
  if (::mkdir(bundle.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return std::unexpected(AlreadyExists("bundle " + bundle + ": already exists"));
    }
    return std::unexpected(StatusFromErrno(errno, "mkdir " + bundle));
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
  RETURN_IF_ERROR(WriteFileAtomic(bundle + "/config.json", o.spec, 0644));
  std::string logp = bundle + "/log";
  if (::mkfifo(logp.c_str(), 0700) != 0) return std::unexpected(StatusFromErrno(errno, "mkfifo log"));
  int logfd = ::open(logp.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (logfd < 0) return std::unexpected(StatusFromErrno(errno, "open log fifo"));
  shim->log_fd_ = logfd;
  WatchLog(shim, logfd);

  std::string stdin_data;
  if (o.options) {
    google::protobuf::Any any;
    any.set_type_url(o.options->type_url);
    any.set_value(o.options->value);
    stdin_data = any.SerializeAsString();
  }
  std::vector<std::string> argv = {binary,        "-namespace",       o.ns,
                                   "-address",    cfg_.grpc_address,  "-publish-binary",
                                   cfg_.publish_binary, "-id",        o.id,
                                   "start"};
  started = true;  // from here on, a failed start may have left a shim behind
  ASSIGN_OR_RETURN(CommandResult r,
                   RunCommand(argv, bundle,
                              {"TTRPC_ADDRESS=" + cfg_.ttrpc_address, "GOMAXPROCS=2"}, stdin_data,
                              kStartTimeout));
  if (r.exit_code != 0) {
    return std::unexpected(Internal(binary + ": " + Trim(r.err.empty() ? r.out : r.err) +
                                    ": exit status " + std::to_string(r.exit_code)));
  }
  std::string address = Trim(r.out);
  shim->binary_ = binary;
  RETURN_IF_ERROR(Connect(shim, address));
  RETURN_IF_ERROR(WriteFileAtomic(bundle + "/shim-binary-path", binary, 0600));

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
  RETURN_IF_ERROR(shim->Call("Create", creq, &cresp));
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
  std::error_code ec;
  for (const auto& nsent : fsys::directory_iterator(cfg_.state_dir, ec)) {
    if (!nsent.is_directory()) continue;
    std::string ns = nsent.path().filename().string();
    if (ns.starts_with(".")) continue;
    std::error_code ec2;
    for (const auto& ent : fsys::directory_iterator(nsent.path(), ec2)) {
      std::string id = ent.path().filename().string();
      if (!ent.is_directory() || id.starts_with(".")) continue;
      std::string bundle = ent.path().string();
      auto shim = std::make_shared<Shim>();
      shim->ns_ = ns;
      shim->id_ = id;
      shim->bundle_ = bundle;
      auto bin = ReadFile(bundle + "/shim-binary-path");
      if (bin) shim->binary_ = Trim(*bin);
      auto addr = ReadFile(bundle + "/address");
      if (!bin || !addr) {
        spdlog::info("removing half-created bundle {}", bundle);
        if (bin && !shim->binary_.empty()) (void)RunDeleteCommand(shim->binary_, ns, id, bundle);
        RemoveBundle(ns, id);
        continue;
      }
      bool live = false;
      bool has_container = container_exists(ns, id);
      {
        int logfd = ::open((bundle + "/log").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (logfd >= 0) {
          shim->log_fd_ = logfd;
          WatchLog(shim, logfd);
        }
        if (Connect(shim, Trim(*addr)).ok()) {
          task::ConnectRequest creq;
          creq.set_id(id);
          task::ConnectResponse cresp;
          if (shim->Call("Connect", creq, &cresp, kConnectTimeout).ok()) {
            shim->pid_ = cresp.task_pid();
            live = true;
          }
        }
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
        continue;
      }
      if (live) {
        std::lock_guard lock(mu_);
        tasks_[{ns, id}] = shim;
        spdlog::info("recovered task {}/{} pid {}", ns, id, shim->pid_);
        continue;
      }
      spdlog::info("shim of {}/{} is gone; cleaning up", ns, id);
      shim->deleting_ = true;
      CloseShim(shim);
      CleanupDead(shim);
    }
  }
}

}  // namespace berth::tasks
