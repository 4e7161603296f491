#include "daemon/daemon.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <atomic>
#include <cerrno>
#include <thread>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string_view>

#include "common/fs.h"
#include "common/log.h"
#include "common/mount.h"
#include "diff/decompress.h"
#include "daemon/memory.h"
#include "daemon/plugins.h"
#include "gc/gc.h"
#include "services/basic_services.h"
#include "services/containers_service.h"
#include "services/content_service.h"
#include "services/diff_service.h"
#include "services/images_service.h"
#include "services/leases_service.h"
#include "services/snapshots_service.h"
#include "services/tasks_service.h"
#include "services/ttrpc_events.h"
#include "snapshots/native/native.h"
#include "snapshots/overlay/overlay.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif
#ifndef BERTH_REVISION
#define BERTH_REVISION "unknown"
#endif

namespace berth::daemon {
namespace {

std::string NewUuid() {
  uuid_t u;
  uuid_generate_random(u);
  char out[37];
  uuid_unparse_lower(u, out);
  return out;
}

// Each snapshotter plugin exports `removal_pending`: how many of its directories wait for a
// removal that failed (GC retries them on every pass). Counted when a client asks.
void AddSnapshotterExports(std::vector<services::PluginInfo>& plugins,
                           const std::vector<std::unique_ptr<snapshots::Backend>>& backends) {
  for (auto& p : plugins) {
    if (p.type != "io.containerd.snapshotter.v1") continue;
    for (const auto& b : backends) {
      if (b->name() != p.id) continue;
      p.live_exports = [backend = b.get()]() -> std::map<std::string, std::string> {
        auto pending = backend->PendingRemovals();
        if (!pending) return {};
        return {{"removal_pending", std::to_string(*pending)}};
      };
    }
  }
}

}  // namespace

// Counts calls in flight: gRPC creates one interceptor per call and destroys it when the call
// is done. When the last call in flight ends it pokes the memory trimmer.
class CallCounter final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounter(std::function<void()> on_idle) : on_idle_(std::move(on_idle)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // A Wait lasts as long as its process, a Subscribe as long as its client: not work that
    // a stop waits for (but their end may leave memory to return).
    bool counted =
        !(info && (std::string_view(info->method()) == "/containerd.services.tasks.v1.Tasks/Wait" ||
                   std::string_view(info->method()) ==
                       "/containerd.services.events.v1.Events/Subscribe"));
    return new Counted(*this, counted);
  }
  int in_flight() const { return in_flight_.load(); }

 private:
  class Counted final : public grpc::experimental::Interceptor {
   public:
    Counted(CallCounter& c, bool counted) : c_(c), counted_(counted) {
      if (counted_) ++c_.in_flight_;
    }
    ~Counted() override {
      if ((!counted_ || --c_.in_flight_ == 0) && c_.on_idle_) c_.on_idle_();
    }
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      methods->Proceed();
    }

   private:
    CallCounter& c_;
    bool counted_;
  };
  std::function<void()> on_idle_;
  std::atomic<int> in_flight_{0};
};

Status ClaimSocket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("socket path " + path + " is longer than " +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return StatusFromErrno(errno, "stat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return FailedPrecondition(path + " exists and is not a socket; refusing to replace it");
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return StatusFromErrno(errno, "socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    return FailedPrecondition("another daemon is already serving on " + path +
                              "; stop it first or choose another --address");
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return StatusFromErrno(errno, "probe existing socket " + path);
  }
  spdlog::info("removing stale socket {}", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return StatusFromErrno(errno, "remove stale socket " + path);
  }
  return Status::Ok();
}

Daemon::Daemon(Config cfg) : cfg_(std::move(cfg)) {}

Daemon::~Daemon() { Stop(std::chrono::milliseconds(0)); }

// Snapshotters `native` and `overlayfs` under <root>/snapshots/<name>. Each backend's dirs are
// collected once no namespace's snapshot row names them, newest (children) first; dirs whose
// removal failed are retried on every pass and counted in the plugin's `removal_pending` export.
Status Daemon::OpenSnapshotters() {
  auto native = snapshots::NativeBackend::Open(cfg_.root + "/snapshots/native");
  if (!native) return native.error().Wrap("open native snapshotter");
  snapshot_backends_.push_back(std::move(*native));
  auto overlay = snapshots::OverlayBackend::Open(cfg_.root + "/snapshots/overlayfs",
                                                 snapshots::OverlayBackend::DetectIndexOff());
  if (!overlay) return overlay.error().Wrap("open overlayfs snapshotter");
  snapshot_backends_.push_back(std::move(*overlay));
  for (auto& b : snapshot_backends_) {
    auto store = std::make_unique<metadata::SnapshotStore>(*db_, *b);
    collector_->AddSnapshotBackend(*b);
    snapshotters_.push_back(std::move(store));
  }
  return Status::Ok();
}

// The ttrpc events socket, then the shim manager, which reconnects to the shims a previous run
// left (they may forward queued events at once, so the socket comes first).
Status Daemon::StartTasks() {
  std::string ttrpc_address = cfg_.address + ".ttrpc";
  RETURN_IF_ERROR(ClaimSocket(ttrpc_address));
  auto loop = ttrpc::LoopThread::Start();
  if (!loop) return loop.error().Wrap("ttrpc loop");
  ttrpc_loop_ = std::move(*loop);
  ttrpc_server_ = std::make_unique<ttrpc::Server>(ttrpc_loop_->loop());
  RETURN_IF_ERROR(services::RegisterTtrpcEvents(*ttrpc_server_, *exchange_));
  RETURN_IF_ERROR(ttrpc_server_->Listen(ttrpc_address));

  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) return StatusFromErrno(errno, "readlink /proc/self/exe");
  tasks::ManagerConfig mc{
      .state_dir = cfg_.state + "/" + tasks::kRuntimePluginDir,
      .work_dir = cfg_.root + "/" + tasks::kRuntimePluginDir,
      .grpc_address = cfg_.address,
      .ttrpc_address = ttrpc_address,
      .publish_binary = std::string(self, static_cast<size_t>(n)),
      .shim_run_dir = std::filesystem::absolute(cfg_.state).string(),
      .binaries = cfg_.runtime_binaries,
  };
  auto manager = tasks::Manager::Create(std::move(mc), *exchange_);
  if (!manager) return manager.error().Wrap("runtime v2");
  tasks_ = std::move(*manager);
  tasks_->Recover([this](const std::string& ns, const std::string& id) {
    return containers_->Get(ns, id).has_value();
  });
  return Status::Ok();
}

Status Daemon::Start() {
  RETURN_IF_ERROR(EnsureDir(cfg_.root, 0700, /*tighten_existing=*/true));
  // The root stays private (CVE-2024-25621). The state dir is 0711, as containerd's: a
  // user-namespaced container's root (a host uid) must traverse it to reach its bundle's rootfs;
  // the bundle itself admits only that container's group (Manager::CreateTask), and everything
  // else below is 0700 or holds 0600 sockets.
  RETURN_IF_ERROR(EnsureDir(cfg_.state, 0711, /*tighten_existing=*/true));
  RETURN_IF_ERROR(EnsureDir(Dirname(cfg_.address), 0700));
  RETURN_IF_ERROR(ClaimSocket(cfg_.address));
  // Temp mounts a killed daemon left (Diff.Diff / Diff.Apply) go before anything else runs.
  if (auto swept = CleanupTempMounts(TempMountDir()); !swept) {
    spdlog::error("cleanup temp mounts: {}", swept.error().ToString());
  }

  auto db = metadata::Db::Open(cfg_.root + "/meta.db");
  if (!db) return db.error();
  db_ = std::move(*db);
  auto uuid = db_->GetOrSetSetting("server_uuid", NewUuid());
  if (!uuid) return uuid.error().Wrap("server uuid");
  namespaces_ = std::make_unique<metadata::NamespaceStore>(*db_);
  exchange_ = std::make_unique<events::Exchange>();
  leases_ = std::make_unique<metadata::LeaseStore>(*db_);
  images_ = std::make_unique<metadata::ImageStore>(*db_);
  containers_ = std::make_unique<metadata::ContainerStore>(*db_);
  auto content_local = content::LocalStore::Open(cfg_.root + "/content");  // runs recovery
  if (!content_local) return content_local.error().Wrap("open content store");
  content_local_ = std::move(*content_local);
  content_ = std::make_unique<metadata::ContentStore>(*db_, *content_local_);
  // Blob files and ingest dirs are collected once no namespace's metadata references them.
  collector_ = std::make_unique<metadata::GarbageCollector>(*db_);
  collector_->AddContentBackend(*content_local_);
  gc_ = std::make_unique<gc::Collector>(*collector_);
  RETURN_IF_ERROR(OpenSnapshotters());
  // Collect what a crash left unreferenced before anyone can connect: a pass that ran later
  // would race the first clients' not-yet-referenced writes.
  if (auto pass = gc_->Collect(); !pass) {
    spdlog::error("startup garbage collection: {}", pass.error().ToString());
  }

  RETURN_IF_ERROR(StartTasks());

  services_.push_back(std::make_unique<services::VersionService>(
      std::string(BERTH_VERSION), std::string(BERTH_REVISION)));
  std::vector<services::PluginInfo> plugins = ProvidedPlugins();
  AddPluginExports(plugins, cfg_.root, cfg_.state, cfg_.runtime_binaries);
  AddSnapshotterExports(plugins, snapshot_backends_);
  services_.push_back(
      std::make_unique<services::IntrospectionService>(std::move(plugins), *uuid));
  services_.push_back(std::make_unique<services::NamespacesService>(*namespaces_, *exchange_));
  services_.push_back(std::make_unique<services::EventsService>(*exchange_));
  services_.push_back(std::make_unique<services::LeasesService>(*leases_, *gc_));
  services_.push_back(std::make_unique<services::ImagesService>(*images_, *exchange_, *gc_));
  services_.push_back(
      std::make_unique<services::ContainersService>(*containers_, *exchange_, *gc_));
  services_.push_back(std::make_unique<services::ContentService>(*content_, *exchange_, *gc_));
  std::map<std::string, snapshots::Snapshotter*> snapshotters;
  for (auto& sn : snapshotters_) snapshotters[sn->name()] = sn.get();
  services_.push_back(
      std::make_unique<services::SnapshotsService>(std::move(snapshotters), *exchange_, *gc_));
  // Diff.Apply unpacks layers; temp mount points live under <root>/tmpmounts as in containerd.
  static_assert(kDefaultMaxExpansionRatio == diff::kDefaultMaxExpansionRatio);
  differ_ = std::make_unique<diff::WalkingDiffer>(*content_, TempMountDir(),
                                                  cfg_.max_expansion_ratio);
  services_.push_back(std::make_unique<services::DiffService>(*differ_, *differ_));
  runtime_ = std::make_unique<tasks::ShimRuntime>(*tasks_);
  services_.push_back(std::make_unique<services::TasksService>(*runtime_, *containers_));

  // grpc.health.v1.Health answers SERVING for "" (clients' IsServing()).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> hooks;
  // After a pull, an unpack or a burst of calls, give back what malloc keeps (see memory.h).
  trimmer_ = std::make_unique<MemoryTrimmer>([this] { return calls_->in_flight() == 0; },
                                             std::chrono::seconds(1));
  auto counter = std::make_unique<CallCounter>([t = trimmer_.get()] { t->Poke(); });
  calls_ = counter.get();
  hooks.push_back(std::move(counter));
  builder.experimental().SetInterceptorCreators(std::move(hooks));
  builder.AddListeningPort("unix:" + cfg_.address, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(cfg_.max_recv_message_size);
  builder.SetMaxSendMessageSize(cfg_.max_send_message_size);
  for (auto& s : services_) builder.RegisterService(s.get());
  server_ = builder.BuildAndStart();
  if (!server_) return Unavailable("cannot listen on " + cfg_.address);
  if (::chmod(cfg_.address.c_str(), 0660) != 0) {
    return StatusFromErrno(errno, "chmod " + cfg_.address);
  }
  gc_->Start();
  spdlog::info("berthd {} serving on {} (root {}, state {})", BERTH_VERSION, cfg_.address,
               cfg_.root, cfg_.state);
  return Status::Ok();
}

void Daemon::DrainForExit(std::chrono::milliseconds grace) {
  if (stopped_ || !server_) return;
  stopped_ = true;
  spdlog::info("stopping: letting in-flight calls finish");
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (calls_->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::unlink(cfg_.address.c_str());
  ::unlink((cfg_.address + ".ttrpc").c_str());
  spdlog::info("stopped");
}

void Daemon::Stop(std::chrono::milliseconds grace) {
  if (stopped_ || !server_) return;
  stopped_ = true;
  spdlog::info("stopping: letting in-flight calls finish");
  // Streams (events subscribers) would otherwise hold Shutdown for the whole grace period.
  exchange_->CloseAll();
  // gRPC's Shutdown(deadline) also waits, up to the deadline, for idle client connections to
  // go away (seconds, with dockerd-style clients that keep a channel open). So wait for the
  // calls themselves, then shut down at once.
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (calls_->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  trimmer_.reset();  // no call left to poke it; it reads the counter server_ owns
  gc_->Stop();
  // Shims and their containers keep running; the next start reconnects to them.
  tasks_.reset();
  ttrpc_server_->Close();
  ttrpc_server_.reset();
  ttrpc_loop_.reset();
  ::unlink(cfg_.address.c_str());
  spdlog::info("stopped");
}

}  // namespace berth::daemon
