// Garbage collection: mark and sweep over the metadata, then over backend data.
//
// Roots (per namespace), as containerd defines them (docs/garbage-collection.md):
//   - every image: its target digest, and the gc.ref labels on the image;
//   - every container: its snapshot (snapshotter/snapshot_key), and the gc.ref labels on the
//     container;
//   - every unexpired lease (label containerd.io/gc.expire, RFC 3339): the content, ingests and
//     snapshots attached to it; with label containerd.io/gc.flat the content is kept but its
//     references are not followed;
//   - content labelled containerd.io/gc.root;
//   - ingests outside any lease that have not passed their expiry.
// Edges: labels `containerd.io/gc.ref.content[.|/]...` (value = digest) on images, containers
// and content; `containerd.io/gc.ref.snapshot.<snapshotter>[/...]` (value = key) on images,
// containers, content and snapshots; a snapshot references its parent; an ingest references
// the content it expects. Snapshots attached to a lease or labelled containerd.io/gc.root are
// roots too.
//
// Sweep: unreachable content rows, snapshot rows, ingests and expired leases are deleted from the metadata in
// one transaction; then, holding Db::gc_lock() exclusively, each backend removes what no
// namespace references any more (blob files, ingest dirs).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "metadata/db.h"
#include "metadata/gc_trigger.h"

namespace berth::gc {

// Backend data GC cleans after the metadata pass.
struct Backend {
  std::string name;                                              // for logs: "content blobs"
  std::function<Result<std::vector<std::string>>()> list;        // ids the backend holds
  std::function<Status(const std::string& id)> remove;           // drop one id
  std::string referenced_sql;  // SELECT of the ids the metadata references, any namespace
};

struct Stats {
  int64_t content_removed = 0;
  int64_t ingests_removed = 0;
  int64_t leases_removed = 0;
  int64_t snapshots_removed = 0;
  int64_t backend_removed = 0;
  std::chrono::microseconds duration{0};
};

class Collector : public metadata::GcTrigger {
 public:
  explicit Collector(metadata::Db& db) : db_(db) {}
  ~Collector() override;

  void AddBackend(Backend backend) { backends_.push_back(std::move(backend)); }

  // One full pass, now, on the caller's thread. Serialised with other passes.
  Result<Stats> Collect();

  // Background scheduling: a pass soon after every Trigger. Trigger(true) returns once a pass
  // that began after the call has finished (a sync delete). The daemon runs one Collect()
  // itself before it serves, to clean up after a crash.
  void Start();
  void Stop();
  void Trigger(bool wait) override;

  int64_t passes() const;

 private:
  void Loop();

  metadata::Db& db_;
  std::vector<Backend> backends_;
  std::mutex collect_mu_;  // one pass at a time

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  int64_t started_ GUARDED_BY(mu_) = 0;  // passes started
  int64_t finished_ GUARDED_BY(mu_) = 0;  // passes finished
  std::thread thread_;
};

// RFC 3339 ("2026-11-28T01:02:03Z", "...+01:00", fractional seconds) → unix nanoseconds.
Result<int64_t> ParseRfc3339(const std::string& text);

}  // namespace berth::gc
