// berthd's wiring: directories, the metadata store, the services, the gRPC server on a Unix
// socket, and an orderly stop. Only this component knows every implementation.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/service_type.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "content/local/store.h"
#include "daemon/config.h"
#include "diff/walking_differ.h"
#include "events/exchange.h"
#include "gc/gc.h"
#include "metadata/container_store.h"
#include "metadata/content_store.h"
#include "metadata/db.h"
#include "metadata/gc.h"
#include "metadata/gc_trigger.h"
#include "metadata/image_store.h"
#include "metadata/lease_store.h"
#include "metadata/namespaces.h"
#include "metadata/snapshot_store.h"
#include "snapshots/snapshotter.h"
#include "tasks/shim_manager.h"
#include "tasks/shim_runtime.h"
#include "ttrpc/event_loop.h"
#include "ttrpc/server.h"

namespace berth::daemon {

class CallCounter;
class MemoryTrimmer;

class Daemon {
 public:
  explicit Daemon(Config cfg);  // out of line: members of incomplete types
  ~Daemon();

  // Prepares directories and the store, claims the socket and starts serving.
  // FailedPrecondition when another daemon already answers on the socket.
  Status Start();
  // Lets in-flight calls finish (up to `grace`), ends streams, removes the socket.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // The process is about to exit: lets in-flight calls finish (up to `grace`) and removes the
  // sockets, but leaves streams open and gRPC running, so clients see the connection drop
  // (Unavailable) when the process ends, as with containerd. A graceful Shutdown would cancel
  // streams with CANCELLED, which dockerd takes for "stop listening to events" for good.
  // Nothing else is needed: every store commit is already durable (kill -9 safe).
  void DrainForExit(std::chrono::milliseconds grace = std::chrono::seconds(10));

  const Config& config() const { return cfg_; }

 private:
  Status OpenSnapshotters();
  Status StartTasks();
  // Where Diff.Apply/Diff.Diff make their temp mount points (containerd's <root>/tmpmounts).
  std::string TempMountDir() const { return cfg_.root + "/tmpmounts"; }

  Config cfg_;
  std::unique_ptr<metadata::Db> db_;
  std::unique_ptr<metadata::NamespaceStore> namespaces_;
  std::unique_ptr<metadata::LeaseStore> leases_;
  std::unique_ptr<metadata::ImageStore> images_;
  std::unique_ptr<metadata::ContainerStore> containers_;
  std::unique_ptr<content::LocalStore> content_local_;  // blobs and ingests on disk
  std::unique_ptr<metadata::ContentStore> content_;      // per-namespace view of them
  std::unique_ptr<diff::WalkingDiffer> differ_;         // Diff.Apply / Diff.Diff
  std::vector<std::unique_ptr<snapshots::Backend>> snapshot_backends_;  // native, overlayfs
  std::vector<std::unique_ptr<metadata::SnapshotStore>> snapshotters_;
  std::unique_ptr<metadata::GarbageCollector> collector_;  // what a GC pass does
  std::unique_ptr<gc::Collector> gc_;                      // when passes run
  std::unique_ptr<events::Exchange> exchange_;
  // `<address>.ttrpc`: shims forward their events here.
  std::unique_ptr<ttrpc::LoopThread> ttrpc_loop_;
  std::unique_ptr<ttrpc::Server> ttrpc_server_;
  std::unique_ptr<tasks::Manager> tasks_;  // shims; closing it leaves them running
  std::unique_ptr<tasks::ShimRuntime> runtime_;  // tasks_ as the Tasks service's Runtime
  std::vector<std::unique_ptr<grpc::Service>> services_;
  // malloc_trim after calls end (outlives server_, whose call counter pokes it).
  std::unique_ptr<MemoryTrimmer> trimmer_;
  std::unique_ptr<grpc::Server> server_;
  CallCounter* calls_ = nullptr;  // owned by server_
  bool stopped_ = false;
};

// Makes `path` available for a new listener: a socket nobody answers on is removed (stale,
// from a crash); one that answers is FailedPrecondition; anything that is not a socket is left
// alone and refused.
Status ClaimSocket(const std::string& path);

}  // namespace berth::daemon
