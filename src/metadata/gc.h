// Garbage collection inside the metadata: mark and sweep over the database, then the sweep of
// backend data (containerd: core/metadata/db.go GarbageCollect over pkg/gc's tricolor mark).
// When a pass runs is gc::Collector's business (src/gc); what a pass does is here.
//
// Roots (per namespace), as containerd defines them (docs/garbage-collection.md):
//   - every image: its target digest, and the gc.ref labels on the image;
//   - every container: its snapshot (snapshotter/snapshot_key), and the gc.ref labels on the
//     container;
//   - every unexpired lease (label containerd.io/gc.expire, RFC 3339): the content, ingests and
//     snapshots attached to it; with label containerd.io/gc.flat the content is kept but its
//     references are not followed;
//   - content and snapshots labelled containerd.io/gc.root;
//   - ingests outside any lease that have not passed their expiry.
// Edges: labels `containerd.io/gc.ref.content[.|/]...` (value = digest) on images, containers,
// content and snapshots; `containerd.io/gc.ref.snapshot.<snapshotter>[/...]` (value = key) on
// images, containers, content and snapshots; a snapshot references its parent; an ingest
// references the content it expects.
//
// A pass:
//   1. Mark and sweep the metadata in ONE write transaction: unreachable content rows, snapshot
//      rows, ingest rows and expired leases are deleted with their labels.
//   2. Holding Db::gc_lock() exclusively, hand each backend the ids the metadata of every
//      namespace still references; the backend removes the rest (blob files, ingest dirs,
//      snapshot dirs) and retries removals that failed before. Writers that make backend data
//      reachable in two steps (data, then row) hold the lock shared, so nothing whose row is
//      about to appear is removed.
// The metadata never names a backend implementation: content backends are content::Sweeper,
// snapshot backends snapshots::Backend. One backend failing (or one bad entry in it) is logged
// and the pass goes on with the rest.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "content/content.h"
#include "metadata/db.h"
#include "snapshots/snapshotter.h"

namespace berth::metadata {

struct GcStats {
  int64_t content_removed = 0;    // content rows
  int64_t ingests_removed = 0;    // ingest rows
  int64_t leases_removed = 0;     // expired leases
  int64_t snapshots_removed = 0;  // snapshot rows
  int64_t backend_removed = 0;    // blob files, ingest dirs, snapshot dirs
  int64_t backend_errors = 0;     // backends that could not be swept at all (logged)
  std::chrono::microseconds duration{0};
};

class GarbageCollector {
 public:
  explicit GarbageCollector(Db& db) : db_(db) {}

  // Backends swept after the metadata pass, in the order added. Not owned; they must outlive
  // the collector. Add them before the first Collect.
  void AddContentBackend(content::Sweeper& sweeper) { content_.push_back(&sweeper); }
  void AddSnapshotBackend(snapshots::Backend& backend) { snapshots_.push_back(&backend); }

  // One full pass, now, on the caller's thread; passes are serialised. Errors: only from the
  // metadata transaction (nothing was deleted then). Backend failures are logged and counted.
  Result<GcStats> Collect();
  // Collect with "now" = `now_nanos` (unix nanoseconds) for lease and ingest expiry.
  Result<GcStats> CollectAtForTest(int64_t now_nanos) { return CollectAt(now_nanos); }

 private:
  Result<GcStats> CollectAt(int64_t now);
  void SweepBackends(GcStats& stats);

  Db& db_;
  std::vector<content::Sweeper*> content_;
  std::vector<snapshots::Backend*> snapshots_;
  std::mutex pass_mu_;  // one pass at a time
};

// What the backends must keep, read in one transaction of any kind; every namespace counts.
// Blobs: digests with a content row, and digests an ingest row expects (a "shared" writer
// links an existing blob on commit). Ingests: backend refs of ingest rows.
struct ContentReferences {
  std::set<std::string> blobs;
  std::set<std::string> ingests;
};
Result<ContentReferences> ReferencedContent(Tx& tx);
// Backend ids of snapshotter `snapshotter` that a snapshot row of any namespace names.
Result<std::set<int64_t>> ReferencedSnapshotIds(Tx& tx, std::string_view snapshotter);

// RFC 3339 ("2026-11-28T01:02:03Z", "...+01:00", fractional seconds) → unix nanoseconds.
Result<int64_t> ParseRfc3339(const std::string& text);

}  // namespace berth::metadata
