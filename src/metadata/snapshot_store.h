// Snapshots as a namespace sees them (containerd's metadata/snapshot.go over a backend):
// keys, parents, kinds, labels, usage and lease attachment in the `snapshots` table, data in a
// snapshots::Backend addressed by numeric ids.
//
// Model:
//  - One SnapshotStore per snapshotter. A row (namespace, snapshotter, key) names backend id
//    `id`; ids come from the sequence "snapshots/<snapshotter>", so the same key in two
//    namespaces never meets on disk. Commit keeps the id: the Active data becomes Committed.
//  - Prepare/View check the rules in one transaction, create the backend data outside it, and
//    insert the row in a second transaction that re-checks; both under Db::gc_lock() held
//    shared, so the collector never removes data whose row is about to appear. A failed insert
//    removes the data again.
//  - Remove deletes the row, its labels and lease attachments, then the backend data under
//    Db::gc_lock() held shared (a failure there is logged; every GC pass retries it).
//  - Labels are kind "snapshot/<snapshotter>" in the labels table.
//
// Garbage collection (metadata/gc.h) sweeps the backend with the ids any namespace's rows name
// (ReferencedSnapshotIds); Cleanup does the same on request.
#pragma once

#include <string>

#include "metadata/db.h"
#include "snapshots/snapshotter.h"

namespace berth::metadata {

class SnapshotStore final : public snapshots::Snapshotter {
 public:
  SnapshotStore(Db& db, snapshots::Backend& backend);

  Result<std::vector<snapshots::Mount>> Prepare(const snapshots::Ctx& ctx, std::string_view key,
                                                std::string_view parent,
                                                const Labels& labels) override;
  Result<std::vector<snapshots::Mount>> View(const snapshots::Ctx& ctx, std::string_view key,
                                             std::string_view parent,
                                             const Labels& labels) override;
  Result<std::vector<snapshots::Mount>> Mounts(const snapshots::Ctx& ctx,
                                               std::string_view key) override;
  Status Commit(const snapshots::Ctx& ctx, std::string_view name, std::string_view key,
                const Labels& labels) override;
  Status Remove(const snapshots::Ctx& ctx, std::string_view key) override;
  Result<snapshots::Info> Stat(const snapshots::Ctx& ctx, std::string_view key) override;
  Result<snapshots::Info> Update(const snapshots::Ctx& ctx, const snapshots::Info& info,
                                 const std::vector<std::string>& fieldpaths) override;
  Status Walk(const snapshots::Ctx& ctx,
              const std::function<Status(const snapshots::Info&)>& fn,
              std::span<const std::string> filters = {}) override;
  Result<snapshots::Usage> Usage(const snapshots::Ctx& ctx, std::string_view key) override;
  Status Cleanup(const snapshots::Ctx& ctx) override;

  const std::string& name() const { return name_; }
  snapshots::Backend& backend() { return backend_; }

 private:
  Result<std::vector<snapshots::Mount>> Create(const snapshots::Ctx& ctx, snapshots::Kind kind,
                                               std::string_view key, std::string_view parent,
                                               const Labels& labels);

  Db& db_;
  snapshots::Backend& backend_;
  std::string name_;        // snapshotter name
  std::string label_kind_;  // "snapshot/<name>"
  std::string lease_type_;  // "snapshots/<name>"
};

}  // namespace berth::metadata
