// berth run, create, start, exec, attach, kill, ps, pause, resume, rm and `berth tasks ...`:
// what ctr's `run` and `tasks` commands do, over the same services (Containers, Snapshots,
// Images, Content, Diff through Unpack, Tasks). The client builds the OCI spec (oci_spec.h),
// prepares the container's snapshot, and wires the task's stdio through FIFOs (task_io.h).
#include <fcntl.h>
#include <google/protobuf/empty.pb.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>

#include "cli/commands.h"
#include "cli/mounts.h"
#include "cli/oci_spec.h"
#include "cli/task_io.h"
#include "cli/unpack.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "github.com/containerd/containerd/api/types/task/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace berth::cli {
namespace {

namespace capi = containerd::services::containers::v1;
namespace iapi = containerd::services::images::v1;
namespace lapi = containerd::services::leases::v1;
namespace sapi = containerd::services::snapshots::v1;
namespace tapi = containerd::services::tasks::v1;
namespace ttypes = containerd::v1::types;
using nlohmann::json;

constexpr char kDefaultRuntime[] = "io.containerd.runc.v2";
constexpr char kRuncOptionsType[] = "containerd.runc.v1.Options";
constexpr char kStopSignalLabel[] = "io.containerd.image.config.stop-signal";
// How long to wait for the shim to close a finished process's stdout/stderr.
constexpr auto kOutputDrain = std::chrono::seconds(10);

// The signals `run`, `start`, `exec` and `attach` pass on to the process (ctr's --sig-proxy).
const std::vector<int> kForwarded = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

struct ContainerFlags {
  std::vector<std::string> env;
  std::string cwd;
  bool tty = false;
  bool rootfs = false;  // the first argument is a host directory, not an image
  std::string runtime = kDefaultRuntime;
  std::string snapshotter = "overlayfs";
  std::string platform;
  std::vector<std::string> mounts;
  std::vector<std::string> labels;
  bool net_host = false;
  bool privileged = false;
  bool read_only = false;
  std::string runc_binary;
  std::string runc_root;
  bool runc_systemd_cgroup = false;
};

struct RunFlags {
  ContainerFlags c;
  bool rm = false;
  bool detach = false;
  std::string fifo_dir;
  std::string ref;  // image, or the rootfs directory with --rootfs
  std::string id;
  // Set when parsed, from the arguments left after REF and ID.
  std::vector<std::string> args;
};

struct ExecFlags {
  bool tty = false;
  bool detach = false;
  std::string exec_id;
  std::string cwd;
  std::vector<std::string> env;
  std::string user;
  std::string fifo_dir;
  std::string id;
  std::vector<std::string> args;
};

// The services, over the client's one channel.
struct Services {
  const Client* client;
  std::unique_ptr<tapi::Tasks::Stub> tasks;
  std::unique_ptr<capi::Containers::Stub> containers;
  std::unique_ptr<sapi::Snapshots::Stub> snapshots;

  explicit Services(const Client* c)
      : client(c),
        tasks(tapi::Tasks::NewStub(c->channel())),
        containers(capi::Containers::NewStub(c->channel())),
        snapshots(sapi::Snapshots::NewStub(c->channel())) {}

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& lease = "") const {
    return client->NewContext(lease);
  }
};

Result<std::unique_ptr<Services>> Connect(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return std::make_unique<Services>(client);
}

std::string FifoRoot(Cli& cli, const std::string& flag) {
  return flag.empty() ? DefaultFifoRoot(SocketPath(cli.options.address)) : flag;
}

Result<capi::Container> GetContainer(const Services& s, const std::string& id) {
  capi::GetContainerRequest req;
  req.set_id(id);
  capi::GetContainerResponse resp;
  RETURN_IF_ERROR(FromGrpc(s.containers->Get(s.Ctx().get(), req, &resp)));
  return resp.container();
}

Result<ttypes::Process> GetProcess(const Services& s, const std::string& id,
                                   const std::string& exec_id = "") {
  tapi::GetRequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  tapi::GetResponse resp;
  RETURN_IF_ERROR(FromGrpc(s.tasks->Get(s.Ctx().get(), req, &resp)));
  return resp.process();
}

Status Kill(const Services& s, const std::string& id, const std::string& exec_id, int sig,
            bool all) {
  tapi::KillRequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  req.set_signal(static_cast<uint32_t>(sig));
  req.set_all(all);
  google::protobuf::Empty resp;
  return FromGrpc(s.tasks->Kill(s.Ctx().get(), req, &resp));
}

Result<tapi::WaitResponse> Wait(const Services& s, const std::string& id,
                                const std::string& exec_id) {
  tapi::WaitRequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  tapi::WaitResponse resp;
  RETURN_IF_ERROR(FromGrpc(s.tasks->Wait(s.Ctx().get(), req, &resp)));
  return resp;
}

Result<tapi::DeleteResponse> DeleteTask(const Services& s, const std::string& id) {
  tapi::DeleteTaskRequest req;
  req.set_container_id(id);
  tapi::DeleteResponse resp;
  RETURN_IF_ERROR(FromGrpc(s.tasks->Delete(s.Ctx().get(), req, &resp)));
  return resp;
}

void CloseStdin(const Services& s, const std::string& id, const std::string& exec_id) {
  tapi::CloseIORequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  req.set_stdin(true);
  google::protobuf::Empty resp;
  (void)s.tasks->CloseIO(s.Ctx().get(), req, &resp);
}

void Resize(const Services& s, const std::string& id, const std::string& exec_id) {
  auto [w, h] = TerminalSize();
  if (w == 0) return;
  tapi::ResizePtyRequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  req.set_width(w);
  req.set_height(h);
  google::protobuf::Empty resp;
  (void)s.tasks->ResizePty(s.Ctx().get(), req, &resp);
}

FifoPaths PathsOf(const ttypes::Process& p) {
  return FifoPaths{p.stdin(), p.stdout(), p.stderr(), p.terminal()};
}

// The snapshot, then the record (what `ctr c rm` does); a missing snapshot is fine.
Status RemoveContainer(const Services& s, const capi::Container& c) {
  if (!c.snapshot_key().empty() && !c.snapshotter().empty()) {
    sapi::RemoveSnapshotRequest req;
    req.set_snapshotter(c.snapshotter());
    req.set_key(c.snapshot_key());
    google::protobuf::Empty resp;
    Status st = FromGrpc(s.snapshots->Remove(s.Ctx().get(), req, &resp));
    if (!st.ok() && st.code() != Code::kNotFound) {
      return st.Wrap("remove snapshot " + Quote(c.snapshot_key()));
    }
  }
  capi::DeleteContainerRequest req;
  req.set_id(c.id());
  google::protobuf::Empty resp;
  return FromGrpc(s.containers->Delete(s.Ctx().get(), req, &resp));
}

// A lease that expires by itself, held while a container's snapshot is made (containerd's
// client does the same in NewContainer), deleted when the container record holds it.
class TempLease {
 public:
  static Result<TempLease> Create(const Services& s) {
    auto stub = lapi::Leases::NewStub(s.client->channel());
    lapi::CreateRequest req;
    req.set_id("berth-run-" + std::to_string(::getpid()) + "-" +
               std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    (*req.mutable_labels())[kExpireLabel] = FormatRfc3339(
        std::chrono::system_clock::now() + std::chrono::hours(24), /*with_fraction=*/false);
    lapi::CreateResponse resp;
    RETURN_IF_ERROR(FromGrpc(stub->Create(s.Ctx().get(), req, &resp)));
    return TempLease(&s, resp.lease().id());
  }
  TempLease(TempLease&& o) noexcept : s_(o.s_), id_(std::move(o.id_)) { o.id_.clear(); }
  ~TempLease() {
    if (id_.empty()) return;
    auto stub = lapi::Leases::NewStub(s_->client->channel());
    lapi::DeleteRequest req;
    req.set_id(id_);
    google::protobuf::Empty resp;
    (void)stub->Delete(s_->Ctx().get(), req, &resp);
  }
  const std::string& id() const { return id_; }

 private:
  TempLease(const Services* s, std::string id) : s_(s), id_(std::move(id)) {}
  const Services* s_;
  std::string id_;
};

// The image's User as ids, read from its layers as containerd does: a read-only view of the
// layer chain mounted on a private temporary directory for the time of the lookup.
Result<std::pair<uint32_t, uint32_t>> ResolveUserInImage(
    const Services& s, const std::string& snapshotter, const std::string& chain,
    const std::string& lease, const std::string& id, const std::string& user) {
  size_t colon = user.find(':');
  if (colon != std::string::npos && user.find_first_not_of("0123456789:") == std::string::npos &&
      colon > 0 && colon + 1 < user.size()) {
    return std::make_pair(static_cast<uint32_t>(std::stoul(user.substr(0, colon))),
                          static_cast<uint32_t>(std::stoul(user.substr(colon + 1))));
  }
  char tmpl[] = "/tmp/berth-user-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return std::unexpected(StatusFromErrno(errno, "mkdtemp"));
  std::string dir = tmpl;
  std::string key = "berth-user-" + id + "-" + std::to_string(::getpid());
  sapi::ViewSnapshotRequest req;
  req.set_snapshotter(snapshotter);
  req.set_key(key);
  req.set_parent(chain);
  sapi::ViewSnapshotResponse view;
  Status st = FromGrpc(s.snapshots->View(s.Ctx(lease).get(), req, &view));
  Result<std::pair<uint32_t, uint32_t>> out = std::unexpected(st);
  if (st.ok()) {
    st = MountAll(view.mounts(), dir);
    if (st.ok()) {
      out = ResolveUserInRoot(dir, user);
      if (Status u = UnmountAll(dir); !u.ok()) PrintError(u.Wrap("unmount " + dir));
    } else {
      out = std::unexpected(st);
    }
    sapi::RemoveSnapshotRequest rm;
    rm.set_snapshotter(snapshotter);
    rm.set_key(key);
    google::protobuf::Empty e;
    (void)s.snapshots->Remove(s.Ctx().get(), rm, &e);
  }
  ::rmdir(dir.c_str());
  if (!out) return std::unexpected(out.error().Wrap("image user " + Quote(user)));
  return out;
}

// The container record (and, for an image, its snapshot) for `berth run` / `berth create`.
Status CreateContainer(Cli& cli, const Services& s, const RunFlags& f) {
  RETURN_IF_ERROR(ValidateIdentifier(f.id).Wrap("container id"));
  auto labels = ParseLabelArgs(f.c.labels);
  if (!labels) return labels.error();

  SpecOptions so;
  so.id = f.id;
  so.ns = cli.options.ns;
  so.args = f.args;
  so.env = f.c.env;
  so.cwd = f.c.cwd;
  so.tty = f.c.tty;
  so.read_only = f.c.read_only;
  so.net_host = f.c.net_host;
  so.privileged = f.c.privileged;
  so.annotations = *labels;
  for (const auto& m : f.c.mounts) {
    ASSIGN_OR_RETURN(json mj, ParseMountFlag(m));
    so.mounts.push_back(std::move(mj));
  }

  capi::Container c;
  c.set_id(f.id);
  c.mutable_runtime()->set_name(f.c.runtime);
  if (!f.c.runc_binary.empty() || !f.c.runc_root.empty() || f.c.runc_systemd_cgroup) {
    containerd::runc::v1::Options opts;
    opts.set_binary_name(f.c.runc_binary);
    opts.set_root(f.c.runc_root);
    opts.set_systemd_cgroup(f.c.runc_systemd_cgroup);
    auto* any = c.mutable_runtime()->mutable_options();
    any->set_type_url(kRuncOptionsType);
    any->set_value(opts.SerializeAsString());
  }

  std::optional<TempLease> lease;
  Labels all_labels;
  if (f.c.rootfs) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(f.ref, ec).lexically_normal();
    if (ec || !std::filesystem::is_directory(abs, ec)) {
      return NotFound("rootfs " + Quote(f.ref) + " is not a directory");
    }
    so.rootfs_path = abs.string();
    if (so.rootfs_path.size() > 1 && so.rootfs_path.back() == '/') so.rootfs_path.pop_back();
    so.resolve_user = [root = so.rootfs_path](const std::string& user) {
      return ResolveUserInRoot(root, user);
    };
  } else {
    Result<Platform> platform =
        f.c.platform.empty() ? Result<Platform>(HostPlatform()) : ParsePlatform(f.c.platform);
    if (!platform) return platform.error();
    auto images = iapi::Images::NewStub(s.client->channel());
    iapi::GetImageRequest get;
    get.set_name(f.ref);
    iapi::GetImageResponse image;
    RETURN_IF_ERROR(
        FromGrpc(images->Get(s.Ctx().get(), get, &image)).Wrap("image " + Quote(f.ref)));
    ASSIGN_OR_RETURN(ImageRootFs rootfs,
                     ResolveRootFs(*s.client, image.image().target(), *platform));
    ASSIGN_OR_RETURN(json config, ReadImageConfig(*s.client, rootfs));
    so.image_config = config.contains("config") ? config["config"] : json::object();
    if (so.image_config.is_null()) so.image_config = json::object();

    ASSIGN_OR_RETURN(TempLease l, TempLease::Create(s));
    lease.emplace(std::move(l));
    bool tty = ::isatty(STDERR_FILENO) == 1;
    RETURN_IF_ERROR(
        Unpack(*s.client, rootfs, f.c.snapshotter, lease->id(), [&](size_t i, bool applied) {
          if (applied && tty) {
            std::fprintf(stderr, "unpacked layer %zu/%zu %s (%s)\n", i + 1, rootfs.layers.size(),
                         rootfs.layers[i].digest().c_str(),
                         HumanSize(rootfs.layers[i].size()).c_str());
          }
        }).Wrap("unpack " + Quote(f.ref)));
    sapi::PrepareSnapshotRequest prep;
    prep.set_snapshotter(f.c.snapshotter);
    prep.set_key(f.id);
    prep.set_parent(rootfs.chain_id());
    sapi::PrepareSnapshotResponse prepared;
    RETURN_IF_ERROR(FromGrpc(s.snapshots->Prepare(s.Ctx(lease->id()).get(), prep, &prepared))
                        .Wrap("prepare snapshot " + Quote(f.id)));
    so.resolve_user = [&s, &f, lease_id = lease->id(),
                       chain = rootfs.chain_id()](const std::string& user) {
      return ResolveUserInImage(s, f.c.snapshotter, chain, lease_id, f.id, user);
    };
    c.set_image(f.ref);
    c.set_snapshotter(f.c.snapshotter);
    c.set_snapshot_key(f.id);
    // Image config labels first, the command line's win (ctr's buildLabels).
    if (auto it = so.image_config.find("Labels"); it != so.image_config.end() && it->is_object()) {
      for (const auto& [k, v] : it->items()) {
        if (v.is_string()) all_labels[k] = v.get<std::string>();
      }
    }
    std::string stop = "SIGTERM";
    if (auto it = so.image_config.find("StopSignal");
        it != so.image_config.end() && it->is_string() && !it->get<std::string>().empty()) {
      stop = it->get<std::string>();
    }
    all_labels[kStopSignalLabel] = stop;
  }
  for (const auto& [k, v] : *labels) all_labels[k] = v;
  for (const auto& [k, v] : all_labels) (*c.mutable_labels())[k] = v;

  auto spec = GenerateSpec(so);
  if (!spec) {
    if (!c.snapshot_key().empty()) (void)RemoveContainer(s, c);  // the snapshot only: no record
    return spec.error();
  }
  c.mutable_spec()->set_type_url(kSpecTypeUrl);
  c.mutable_spec()->set_value(spec->dump());

  capi::CreateContainerRequest req;
  *req.mutable_container() = c;
  capi::CreateContainerResponse resp;
  Status st = FromGrpc(s.containers->Create(s.Ctx().get(), req, &resp));
  if (!st.ok() && !c.snapshot_key().empty()) {  // the snapshot is ours: Prepare made it
    sapi::RemoveSnapshotRequest rm;
    rm.set_snapshotter(c.snapshotter());
    rm.set_key(c.snapshot_key());
    google::protobuf::Empty e;
    (void)s.snapshots->Remove(s.Ctx().get(), rm, &e);
  }
  return st;
}

// Creates the task of container `id` with stdio on `fifos` (ctr's container.NewTask): the
// rootfs mounts come from the container's snapshot.
Result<uint32_t> CreateTask(const Services& s, const capi::Container& c, const FifoPaths& fifos) {
  tapi::CreateTaskRequest req;
  req.set_container_id(c.id());
  if (!c.snapshot_key().empty()) {
    sapi::MountsRequest mreq;
    mreq.set_snapshotter(c.snapshotter());
    mreq.set_key(c.snapshot_key());
    sapi::MountsResponse mresp;
    RETURN_IF_ERROR(FromGrpc(s.snapshots->Mounts(s.Ctx().get(), mreq, &mresp))
                        .Wrap("snapshot mounts of " + Quote(c.id())));
    *req.mutable_rootfs() = mresp.mounts();
  }
  req.set_stdin(fifos.stdin);
  req.set_stdout(fifos.stdout);
  req.set_stderr(fifos.stderr);
  req.set_terminal(fifos.terminal);
  tapi::CreateTaskResponse resp;
  RETURN_IF_ERROR(FromGrpc(s.tasks->Create(s.Ctx().get(), req, &resp)));
  return resp.pid();
}

Status StartProcess(const Services& s, const std::string& id, const std::string& exec_id) {
  tapi::StartRequest req;
  req.set_container_id(id);
  req.set_exec_id(exec_id);
  tapi::StartResponse resp;
  return FromGrpc(s.tasks->Start(s.Ctx().get(), req, &resp));
}

bool SpecTerminal(const capi::Container& c) {
  json spec = json::parse(c.spec().value(), nullptr, false);
  return !spec.is_discarded() && spec.is_object() && spec.contains("process") &&
         spec["process"].value("terminal", false);
}

// What run, start and exec share once the process exists: copy its stdio, start it, wait for
// its exit (no deadline: contexts carry none) and for its output to drain, which is before
// the caller deletes the process, as ctr's io.Wait before Delete. Returns the exit status.
Result<uint32_t> StartAndWait(const Services& s, const std::string& id, const std::string& exec_id,
                              const FifoPaths& fifos, IoCopier& io, bool interactive_tty) {
  std::optional<RawTerminal> raw;
  if (interactive_tty) raw.emplace();
  io.Start();
  // The pty exists from Create on: size it before the process can look.
  if (fifos.terminal) Resize(s, id, exec_id);
  RETURN_IF_ERROR(StartProcess(s, id, exec_id));
  if (fifos.terminal) Resize(s, id, exec_id);
  auto status = Wait(s, id, exec_id);
  io.Wait(kOutputDrain);
  if (!status) return std::unexpected(status.error());
  return status->exit_status();
}

// The signal proxy: set up before anything opens a gRPC channel, so that the signals stay
// blocked in gRPC's threads too and reach only the catcher's thread.
struct SignalProxy {
  std::mutex mu;
  const Services* services = nullptr;
  std::string id, exec_id;
  bool tty = false;
  std::unique_ptr<SignalCatcher> catcher;

  SignalProxy() {
    std::vector<int> sigs = kForwarded;
    sigs.push_back(SIGWINCH);
    ::signal(SIGPIPE, SIG_IGN);
    catcher = std::make_unique<SignalCatcher>(sigs, [this](int sig) {
      std::lock_guard lock(mu);
      if (!services) {
        // Nothing to pass it to yet (or any more): behave as if it had not been caught.
        if (sig != SIGWINCH) std::_Exit(128 + sig);
        return;
      }
      if (sig == SIGWINCH) {
        if (tty) Resize(*services, id, exec_id);
        return;
      }
      if (Status st = Kill(*services, id, exec_id, sig, false); !st.ok()) {
        PrintError(st.Wrap("forward " + SignalName(sig)));
      }
    });
  }
  void Target(const Services* s, std::string task, std::string exec, bool terminal) {
    std::lock_guard lock(mu);
    services = s;
    id = std::move(task);
    exec_id = std::move(exec);
    tty = terminal;
  }
  ~SignalProxy() {
    catcher.reset();
    std::lock_guard lock(mu);
    services = nullptr;
  }
};

// The task of container `c` started and waited for (foreground) or just started (detach);
// `rm` removes the container afterwards. Returns the exit code for the CLI.
int RunTask(Cli& cli, SignalProxy& proxy, const Services& s, const capi::Container& c, bool detach,
            bool rm, const std::string& fifo_dir) {
  bool tty = SpecTerminal(c);
  auto cleanup_container = [&] {
    if (!rm) return;
    if (Status st = RemoveContainer(s, c); !st.ok()) PrintError(st.Wrap("remove container"));
  };
  auto fifos = NewFifoSet(FifoRoot(cli, fifo_dir), c.id(), tty);
  if (!fifos) {
    cleanup_container();
    return ReportError(fifos.error());
  }
  auto io = IoCopier::Open(*fifos, [&s, id = c.id()] { CloseStdin(s, id, ""); });
  if (!io) {
    RemoveFifoSet(*fifos);
    cleanup_container();
    return ReportError(io.error());
  }
  auto pid = CreateTask(s, c, *fifos);
  if (!pid) {
    io->reset();
    RemoveFifoSet(*fifos);
    cleanup_container();
    return ReportError(pid.error());
  }
  if (detach) {
    // The FIFOs stay for `berth attach`; `berth rm` removes them with the task.
    if (Status st = StartProcess(s, c.id(), ""); !st.ok()) {
      (void)DeleteTask(s, c.id());
      RemoveFifoSet(*fifos);
      return ReportError(st);
    }
    return 0;
  }
  proxy.Target(&s, c.id(), "", tty);
  auto status = StartAndWait(s, c.id(), "", *fifos, **io, tty);
  proxy.Target(nullptr, "", "", false);
  if (!status) {
    // Start failed (or Wait broke): the task must not outlive us.
    (void)Kill(s, c.id(), "", SIGKILL, true);
    (void)Wait(s, c.id(), "");
  }
  io->reset();
  auto deleted = DeleteTask(s, c.id());
  RemoveFifoSet(*fifos);
  cleanup_container();
  if (!status) return ReportError(status.error());
  if (!deleted) return ReportError(deleted.error().Wrap("delete task"));
  return static_cast<int>(*status);
}

int RunRun(Cli& cli, RunFlags& f, bool create_only) {
  if (f.rm && f.detach)
    return ReportError(InvalidArgument("--rm and --detach cannot be used together"));
  SignalProxy proxy;
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  if (Status st = CreateContainer(cli, **s, f); !st.ok()) return ReportError(st);
  if (create_only) {
    if (cli.format() == Format::kJson) {
      PrintJson({{"id", f.id}}, std::cout);
    } else {
      std::cout << f.id << '\n';
    }
    return 0;
  }
  auto c = GetContainer(**s, f.id);
  if (!c) return ReportError(c.error());
  return RunTask(cli, proxy, **s, *c, f.detach, f.rm, f.fifo_dir);
}

int RunStart(Cli& cli, const std::string& id, bool detach, const std::string& fifo_dir) {
  SignalProxy proxy;
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  auto c = GetContainer(**s, id);
  if (!c) return ReportError(c.error());
  return RunTask(cli, proxy, **s, *c, detach, /*rm=*/false, fifo_dir);
}

std::string RandomExecId() {
  std::ifstream in("/proc/sys/kernel/random/uuid");
  std::string uuid;
  in >> uuid;
  uuid.erase(std::remove(uuid.begin(), uuid.end(), '-'), uuid.end());
  return "exec-" + uuid.substr(0, 12);
}

int RunExec(Cli& cli, ExecFlags& f) {
  if (f.args.empty()) return ReportError(InvalidArgument("give a command to run"));
  std::string exec_id = f.exec_id.empty() ? RandomExecId() : f.exec_id;
  SignalProxy proxy;
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  auto c = GetContainer(**s, f.id);
  if (!c) return ReportError(c.error());
  json spec = json::parse(c->spec().value(), nullptr, false);
  if (spec.is_discarded() || !spec.is_object() || !spec.contains("process")) {
    return ReportError(FailedPrecondition("container " + Quote(f.id) + " has no OCI process spec"));
  }
  json proc = spec["process"];
  proc["args"] = f.args;
  proc["terminal"] = f.tty;
  if (!f.cwd.empty()) proc["cwd"] = f.cwd;
  std::vector<std::string> env;
  if (proc.contains("env") && proc["env"].is_array())
    env = proc["env"].get<std::vector<std::string>>();
  env = MergeEnv(env, f.env);
  if (f.tty) env = MergeEnv(env, {"TERM=xterm"});
  proc["env"] = env;
  if (!f.user.empty()) {
    size_t colon = f.user.find(':');
    try {
      proc["user"]["uid"] = std::stoul(f.user.substr(0, colon));
      if (colon != std::string::npos) proc["user"]["gid"] = std::stoul(f.user.substr(colon + 1));
    } catch (const std::exception&) {
      return ReportError(InvalidArgument("--user takes a numeric uid[:gid]"));
    }
  }

  auto fifos = NewFifoSet(FifoRoot(cli, f.fifo_dir), exec_id, f.tty);
  if (!fifos) return ReportError(fifos.error());
  const Services& svc = **s;
  auto io = IoCopier::Open(*fifos, [&svc, id = f.id, exec_id] { CloseStdin(svc, id, exec_id); });
  if (!io) {
    RemoveFifoSet(*fifos);
    return ReportError(io.error());
  }
  tapi::ExecProcessRequest req;
  req.set_container_id(f.id);
  req.set_exec_id(exec_id);
  req.set_stdin(fifos->stdin);
  req.set_stdout(fifos->stdout);
  req.set_stderr(fifos->stderr);
  req.set_terminal(f.tty);
  req.mutable_spec()->set_type_url(kProcessTypeUrl);
  req.mutable_spec()->set_value(proc.dump());
  google::protobuf::Empty resp;
  if (Status st = FromGrpc(svc.tasks->Exec(svc.Ctx().get(), req, &resp)); !st.ok()) {
    io->reset();
    RemoveFifoSet(*fifos);
    return ReportError(st);
  }
  auto delete_process = [&] {
    tapi::DeleteProcessRequest dreq;
    dreq.set_container_id(f.id);
    dreq.set_exec_id(exec_id);
    tapi::DeleteResponse dresp;
    return FromGrpc(svc.tasks->DeleteProcess(svc.Ctx().get(), dreq, &dresp));
  };
  if (f.detach) {
    Status st = StartProcess(svc, f.id, exec_id);
    if (!st.ok()) {
      (void)delete_process();
      RemoveFifoSet(*fifos);
      return ReportError(st);
    }
    std::cout << exec_id << '\n';
    return 0;
  }
  proxy.Target(&svc, f.id, exec_id, f.tty);
  auto status = StartAndWait(svc, f.id, exec_id, *fifos, **io, f.tty);
  proxy.Target(nullptr, "", "", false);
  io->reset();
  Status del = delete_process();
  RemoveFifoSet(*fifos);
  if (!status) return ReportError(status.error());
  if (!del.ok()) return ReportError(del.Wrap("delete exec process"));
  return static_cast<int>(*status);
}

int RunAttach(Cli& cli, const std::string& id) {
  SignalProxy proxy;
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  auto p = GetProcess(**s, id);
  if (!p) return ReportError(p.error());
  if (p->stdout().empty() && p->stdin().empty()) {
    return ReportError(FailedPrecondition("task " + Quote(id) + " has no FIFOs to attach to"));
  }
  // ctr attaches with plain streams: our stdin ending does not close the task's.
  auto io = IoCopier::Open(PathsOf(*p), nullptr);
  if (!io) return ReportError(io.error());
  std::optional<RawTerminal> raw;
  if (p->terminal()) raw.emplace();
  proxy.Target(s->get(), id, "", p->terminal());
  (*io)->Start();
  if (p->terminal()) Resize(**s, id, "");
  auto status = Wait(**s, id, "");
  (*io)->Wait(kOutputDrain);
  proxy.Target(nullptr, "", "", false);
  raw.reset();
  if (!status) return ReportError(status.error());
  return static_cast<int>(status->exit_status());
}

std::string StatusName(ttypes::Status st) {
  std::string n = ttypes::Status_Name(st);
  return n.empty() ? "UNKNOWN" : n;
}

int RunList(Cli& cli, bool quiet) {
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  tapi::ListTasksRequest req;
  tapi::ListTasksResponse resp;
  if (Status st = FromGrpc((*s)->tasks->List((*s)->Ctx().get(), req, &resp)); !st.ok()) {
    return ReportError(st);
  }
  std::vector<ttypes::Process> tasks(resp.tasks().begin(), resp.tasks().end());
  // ctr names a task by Process.id (the container's ID for an init process).
  auto name = [](const ttypes::Process& p) { return p.id().empty() ? p.container_id() : p.id(); };
  std::sort(tasks.begin(), tasks.end(),
            [&](const auto& a, const auto& b) { return name(a) < name(b); });
  if (cli.format() == Format::kJson) {
    json arr = json::array();
    for (const auto& t : tasks) {
      if (quiet) {
        arr.push_back(name(t));
        continue;
      }
      json j = {{"id", name(t)}, {"pid", t.pid()}, {"status", StatusName(t.status())}};
      if (t.status() == ttypes::STOPPED) {
        j["exit_status"] = t.exit_status();
        j["exited_at"] = TimestampJson(t.exited_at());
      }
      arr.push_back(std::move(j));
    }
    PrintJson(arr, std::cout);
    return 0;
  }
  if (quiet) {
    for (const auto& t : tasks) std::cout << name(t) << '\n';
    return 0;
  }
  Table table({"TASK", "PID", "STATUS"});
  for (const auto& t : tasks) {
    std::string status = StatusName(t.status());
    if (t.status() == ttypes::STOPPED) {
      std::string age = AgeOf(t.exited_at());
      if (!age.empty())
        age[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(age[0])));
      status += " (exit " + std::to_string(t.exit_status()) + ", " + age + " ago)";
    }
    table.AddRow({name(t), std::to_string(t.pid()), status});
  }
  table.Print(std::cout);
  return 0;
}

std::string CommandOf(uint32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (auto& ch : raw) {
    if (ch == '\0') ch = ' ';
  }
  return raw.empty() ? "-" : raw;
}

int RunPs(Cli& cli, const std::string& id) {
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  tapi::ListPidsRequest req;
  req.set_container_id(id);
  tapi::ListPidsResponse resp;
  if (Status st = FromGrpc((*s)->tasks->ListPids((*s)->Ctx().get(), req, &resp)); !st.ok()) {
    return ReportError(st);
  }
  if (cli.format() == Format::kJson) {
    json arr = json::array();
    for (const auto& p : resp.processes()) {
      arr.push_back({{"pid", p.pid()}, {"command", CommandOf(p.pid())}});
    }
    PrintJson(arr, std::cout);
    return 0;
  }
  // The command line is read from this host's /proc (berthd is local).
  Table table({"PID", "COMMAND"});
  for (const auto& p : resp.processes()) {
    table.AddRow({std::to_string(p.pid()), CommandOf(p.pid())});
  }
  table.Print(std::cout);
  return 0;
}

int RunKill(Cli& cli, const std::vector<std::string>& ids, const std::string& signal, bool all,
            const std::string& exec_id) {
  if (all && !exec_id.empty()) {
    return ReportError(InvalidArgument("--all and --exec-id cannot be used together"));
  }
  std::optional<int> sig;
  if (!signal.empty()) {
    auto parsed = ParseSignal(signal);
    if (!parsed) return ReportError(parsed.error());
    sig = *parsed;
  }
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    int n = SIGTERM;
    if (sig) {
      n = *sig;
    } else {
      // The image's stop signal, as ctr does.
      ASSIGN_OR_RETURN(capi::Container c, GetContainer(**s, id));
      if (auto it = c.labels().find(kStopSignalLabel); it != c.labels().end()) {
        ASSIGN_OR_RETURN(n, ParseSignal(it->second));
      }
    }
    return Kill(**s, id, exec_id, n, all);
  });
}

int RunPauseResume(Cli& cli, const std::vector<std::string>& ids, bool pause) {
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    google::protobuf::Empty resp;
    if (pause) {
      tapi::PauseTaskRequest req;
      req.set_container_id(id);
      return FromGrpc((*s)->tasks->Pause((*s)->Ctx().get(), req, &resp));
    }
    tapi::ResumeTaskRequest req;
    req.set_container_id(id);
    return FromGrpc((*s)->tasks->Resume((*s)->Ctx().get(), req, &resp));
  });
}

// Deletes the task of `id` (killing it first with `force`) and its FIFOs; NotFound when it has
// none. A non-zero exit status is reported on stderr as ctr does.
Status RemoveTask(const Services& s, const std::string& id, bool force) {
  ASSIGN_OR_RETURN(ttypes::Process p, GetProcess(s, id));
  if (p.status() != ttypes::STOPPED && p.status() != ttypes::CREATED) {
    if (!force) {
      return FailedPrecondition("task " + Quote(id) + " is " + StatusName(p.status()) +
                                "; stop it first (berth kill) or use --force");
    }
    if (p.status() == ttypes::PAUSED) {
      tapi::ResumeTaskRequest req;
      req.set_container_id(id);
      google::protobuf::Empty resp;
      (void)s.tasks->Resume(s.Ctx().get(), req, &resp);
    }
    Status k = Kill(s, id, "", SIGKILL, true);
    if (!k.ok() && k.code() != Code::kNotFound) return k.Wrap("kill");
    ASSIGN_OR_RETURN(tapi::WaitResponse w, Wait(s, id, ""));
    (void)w;
  }
  ASSIGN_OR_RETURN(tapi::DeleteResponse d, DeleteTask(s, id));
  RemoveFifoSet(PathsOf(p));
  if (d.exit_status() != 0 && !force) {
    std::fprintf(stderr, "berth: task %s had exited with code %u\n", id.c_str(), d.exit_status());
  }
  return Status();
}

int RunRemove(Cli& cli, const std::vector<std::string>& ids, bool force, bool task_only) {
  auto s = Connect(cli);
  if (!s) return ReportError(s.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) -> Status {
    Status t = RemoveTask(**s, id, force);
    if (task_only || (!t.ok() && t.code() != Code::kNotFound)) return t;
    ASSIGN_OR_RETURN(capi::Container c, GetContainer(**s, id));
    return RemoveContainer(**s, c);
  });
}

void AddContainerFlags(CLI::App* cmd, ContainerFlags& c) {
  cmd->add_option("-e,--env", c.env, "environment variable KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--cwd", c.cwd, "working directory of the process");
  cmd->add_flag("-t,--tty", c.tty, "give the process a terminal");
  cmd->add_flag("--rootfs", c.rootfs,
                "the first argument is a root filesystem directory, not an image");
  cmd->add_option("--runtime", c.runtime, "runtime (shim) name")->capture_default_str();
  cmd->add_option("--snapshotter", c.snapshotter, "snapshotter for the image's rootfs")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();
  cmd->add_option("--platform", c.platform,
                  "image platform os/arch[/variant] (default: this host)");
  cmd->add_option("--mount", c.mounts,
                  "extra mount, e.g. type=bind,src=/host,dst=/ctr,options=rbind:ro (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--label", c.labels, "container label key=value (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--net-host", c.net_host, "share the host's network namespace");
  cmd->add_flag("--privileged", c.privileged,
                "all capabilities, all devices allowed, no masked paths");
  cmd->add_flag("--read-only", c.read_only, "mount the root filesystem read-only");
  cmd->add_option("--runc-binary", c.runc_binary, "runc binary the runc shim should use");
  cmd->add_option("--runc-root", c.runc_root, "runc's state root (runc shim option)");
  cmd->add_flag("--runc-systemd-cgroup", c.runc_systemd_cgroup, "runc shim: systemd cgroups");
}

// Commands that end with the process's argv take everything after their positional
// arguments verbatim (`berth run IMG id sh -c 'exit 3'`), like ctr: flags go first.
void TakeArgv(CLI::App* cmd) {
  cmd->prefix_command();
  cmd->fallthrough(false);
}

}  // namespace

void AddTasksCommands(CLI::App& app, Cli& cli) {
  // run / create
  for (bool create : {false, true}) {
    auto f = std::make_shared<RunFlags>();
    auto* cmd = app.add_subcommand(
        create ? "create" : "run",
        create ? "create a container from an image (or --rootfs DIR) without starting it"
               : "run a container from an image (or --rootfs DIR): berth run [flags] IMAGE ID "
                 "[COMMAND [ARG...]]");
    AddContainerFlags(cmd, f->c);
    if (!create) {
      cmd->add_flag("--rm", f->rm, "remove the container when the process exits");
      cmd->add_flag("-d,--detach", f->detach, "start the task and return");
      cmd->add_option("--fifo-dir", f->fifo_dir, "directory for the stdio FIFOs");
    }
    cmd->add_option("ref", f->ref, "image name, or a directory with --rootfs")->required();
    cmd->add_option("id", f->id, "container ID")->required();
    TakeArgv(cmd);
    OnParsed(cmd, cli, [&cli, f, cmd, create] {
      f->args = cmd->remaining();
      return RunRun(cli, *f, create);
    });
  }

  auto start_args = std::make_shared<RunFlags>();
  auto add_start = [&](CLI::App* parent) {
    auto* start = parent->add_subcommand("start", "start a created container's task");
    start->add_flag("-d,--detach", start_args->detach, "start the task and return");
    start->add_option("--fifo-dir", start_args->fifo_dir, "directory for the stdio FIFOs");
    start->add_option("id", start_args->id, "container ID")->required();
    OnParsed(start, cli, [&cli, start_args] {
      return RunStart(cli, start_args->id, start_args->detach, start_args->fifo_dir);
    });
  };

  auto exec_args = std::make_shared<ExecFlags>();
  auto add_exec = [&](CLI::App* parent) {
    auto* exec = parent->add_subcommand(
        "exec", "run another process in a running container: berth exec [flags] ID COMMAND...");
    exec->add_flag("-t,--tty", exec_args->tty, "give the process a terminal");
    exec->add_flag("-d,--detach", exec_args->detach, "start the process and return");
    exec->add_option("--exec-id", exec_args->exec_id, "process ID (default: generated)");
    exec->add_option("--cwd", exec_args->cwd, "working directory");
    exec->add_option("-e,--env", exec_args->env, "environment variable KEY=VALUE (repeatable)")
        ->allow_extra_args(false);
    exec->add_option("-u,--user", exec_args->user, "numeric uid[:gid]");
    exec->add_option("--fifo-dir", exec_args->fifo_dir, "directory for the stdio FIFOs");
    exec->add_option("id", exec_args->id, "container ID")->required();
    TakeArgv(exec);
    OnParsed(exec, cli, [&cli, exec_args, exec] {
      exec_args->args = exec->remaining();
      return RunExec(cli, *exec_args);
    });
  };

  struct Common {
    std::vector<std::string> ids;
    std::string id;
    std::string signal;
    std::string exec_id;
    bool all = false;
    bool force = false;
    bool quiet = false;
  };
  auto common = std::make_shared<Common>();
  auto add_kill = [&](CLI::App* parent) {
    auto* kill = parent->add_subcommand(
        "kill", "send a signal to tasks (default: the image's stop signal, else SIGTERM)");
    kill->add_option("-s,--signal", common->signal, "signal name or number");
    kill->add_flag("-a,--all", common->all, "signal every process of the task");
    kill->add_option("--exec-id", common->exec_id, "signal this exec process instead");
    kill->add_option("ids", common->ids, "container IDs")->required();
    OnParsed(kill, cli, [&cli, common] {
      return RunKill(cli, common->ids, common->signal, common->all, common->exec_id);
    });
  };
  auto add_ps = [&](CLI::App* parent) {
    auto* ps = parent->add_subcommand("ps", "list a task's processes");
    ps->add_option("id", common->id, "container ID")->required();
    OnParsed(ps, cli, [&cli, common] { return RunPs(cli, common->id); });
  };
  auto add_pause_resume = [&](CLI::App* parent) {
    auto* pause = parent->add_subcommand("pause", "freeze tasks");
    pause->add_option("ids", common->ids, "container IDs")->required();
    OnParsed(pause, cli, [&cli, common] { return RunPauseResume(cli, common->ids, true); });
    auto* resume = parent->add_subcommand("resume", "thaw paused tasks");
    resume->add_option("ids", common->ids, "container IDs")->required();
    OnParsed(resume, cli, [&cli, common] { return RunPauseResume(cli, common->ids, false); });
  };
  auto add_attach = [&](CLI::App* parent) {
    auto* attach = parent->add_subcommand("attach", "attach to a running task's stdio");
    attach->add_option("id", common->id, "container ID")->required();
    OnParsed(attach, cli, [&cli, common] { return RunAttach(cli, common->id); });
  };
  auto add_ls = [&](CLI::App* parent) {
    auto* ls = parent->add_subcommand("ls", "list tasks");
    ls->alias("list");
    ls->add_flag("-q,--quiet", common->quiet, "print only the IDs");
    OnParsed(ls, cli, [&cli, common] { return RunList(cli, common->quiet); });
  };

  // Top level: the container verbs.
  add_start(&app);
  add_exec(&app);
  add_kill(&app);
  add_ps(&app);
  add_pause_resume(&app);
  add_attach(&app);
  auto* rm = app.add_subcommand("rm", "remove containers: their stopped task, snapshot and record");
  rm->add_option("ids", common->ids, "container IDs")->required();
  rm->add_flag("-f,--force", common->force, "kill a running task first");
  OnParsed(rm, cli, [&cli, common] { return RunRemove(cli, common->ids, common->force, false); });

  // berth tasks ...: ctr's `tasks` group.
  auto* tasks = app.add_subcommand("tasks", "manage tasks (a container's running processes)");
  tasks->alias("task");
  tasks->alias("t");
  tasks->require_subcommand(1);
  add_ls(tasks);
  add_start(tasks);
  add_exec(tasks);
  add_kill(tasks);
  add_ps(tasks);
  add_pause_resume(tasks);
  add_attach(tasks);
  auto* trm = tasks->add_subcommand("rm", "delete stopped tasks (the containers stay)");
  trm->alias("delete");
  trm->alias("del");
  trm->add_option("ids", common->ids, "container IDs")->required();
  trm->add_flag("-f,--force", common->force, "kill a running task first");
  OnParsed(trm, cli, [&cli, common] { return RunRemove(cli, common->ids, common->force, true); });
}

}  // namespace berth::cli
