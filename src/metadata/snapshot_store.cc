#include "metadata/snapshot_store.h"

#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>

#include "common/filters.h"
#include "common/log.h"
#include "metadata/gc.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

using snapshots::Kind;

constexpr std::string_view kTargetRefLabel = "containerd.io/snapshot.ref";

struct Row {
  std::string key;
  int64_t id = 0;
  std::string parent;
  Kind kind = Kind::kUnknown;
  int64_t created = 0;
  int64_t updated = 0;
  int64_t size = 0;
  int64_t inodes = 0;
};

constexpr char kRowColumns[] =
    "key, id, parent_key, kind, created_at, updated_at, size, inodes";

Row RowFrom(const Stmt& st) {
  return Row{st.ColumnText(0), st.ColumnInt(1), st.ColumnText(2),
             static_cast<Kind>(st.ColumnInt(3)), st.ColumnInt(4), st.ColumnInt(5),
             st.ColumnInt(6), st.ColumnInt(7)};
}

Result<std::optional<Row>> ReadRow(Tx& tx, const std::string& ns, const std::string& sn,
                                   std::string_view key) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare(std::string("SELECT ") + kRowColumns +
                                       " FROM snapshots WHERE namespace=? AND snapshotter=? "
                                       "AND key=?"));
  st.Bind(1, ns).Bind(2, sn).Bind(3, key);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Row>();
  return std::optional<Row>(RowFrom(st));
}

Status DoesNotExist(std::string_view key) {
  return NotFound("snapshot " + std::string(key) + " does not exist");
}

Result<Row> MustReadRow(Tx& tx, const std::string& ns, const std::string& sn,
                        std::string_view key) {
  ASSIGN_OR_RETURN(std::optional<Row> row, ReadRow(tx, ns, sn, key));
  if (!row) return std::unexpected(DoesNotExist(key));
  return *row;
}

// Backend ids of `parent` and its ancestors, nearest first.
Result<std::vector<int64_t>> ParentIds(Tx& tx, const std::string& ns, const std::string& sn,
                                       std::string parent) {
  std::vector<int64_t> ids;
  while (!parent.empty()) {
    ASSIGN_OR_RETURN(std::optional<Row> row, ReadRow(tx, ns, sn, parent));
    if (!row) {
      return std::unexpected(NotFound("parent snapshot " + parent + " does not exist"));
    }
    if (ids.size() > 10000) return std::unexpected(Internal("snapshot parent chain loops"));
    ids.push_back(row->id);
    parent = row->parent;
  }
  return ids;
}

Status CheckParent(Tx& tx, const std::string& ns, const std::string& sn, std::string_view parent) {
  if (parent.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(std::optional<Row> row, ReadRow(tx, ns, sn, parent));
  if (!row) return NotFound("parent snapshot " + std::string(parent) + " does not exist");
  if (row->kind != Kind::kCommitted) {
    return InvalidArgument("parent snapshot " + std::string(parent) + " is not committed");
  }
  return Status::Ok();
}

Status DetachAll(Tx& tx, const std::string& ns, const std::string& type, std::string_view key) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM lease_resources WHERE namespace=? AND "
                                       "type=? AND id=?"));
  st.Bind(1, ns).Bind(2, type).Bind(3, key);
  return st.Exec();
}

Status InsertRow(Tx& tx, const std::string& ns, const std::string& sn, const Row& r) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO snapshots(namespace, snapshotter, " +
                                       std::string(kRowColumns) +
                                       ") VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  st.Bind(1, ns).Bind(2, sn).Bind(3, r.key).Bind(4, r.id).Bind(5, r.parent);
  st.Bind(6, static_cast<int64_t>(r.kind)).Bind(7, r.created).Bind(8, r.updated);
  st.Bind(9, r.size).Bind(10, r.inodes);
  return st.Exec();
}

snapshots::Info InfoOf(const Row& r, Labels labels) {
  return snapshots::Info{r.key, r.parent, r.kind, std::move(labels), r.created, r.updated};
}

filters::Adaptor InfoFields(const snapshots::Info& info) {
  return [&info](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.empty()) return std::nullopt;
    if (fp[0] == "name") return info.name;
    if (fp[0] == "parent") return info.parent;
    if (fp[0] == "kind") return std::string(snapshots::KindName(info.kind));
    if (fp[0] == "labels") return filters::LookupMap(info.labels, fp.subspan(1));
    return std::nullopt;
  };
}

}  // namespace

SnapshotStore::SnapshotStore(Db& db, snapshots::Backend& backend)
    : db_(db),
      backend_(backend),
      name_(backend.name()),
      label_kind_(std::string(kKindSnapshotPrefix) + name_),
      lease_type_("snapshots/" + name_) {}

Result<std::vector<snapshots::Mount>> SnapshotStore::Prepare(const snapshots::Ctx& ctx,
                                                             std::string_view key,
                                                             std::string_view parent,
                                                             const Labels& labels) {
  return Create(ctx, Kind::kActive, key, parent, labels);
}

Result<std::vector<snapshots::Mount>> SnapshotStore::View(const snapshots::Ctx& ctx,
                                                          std::string_view key,
                                                          std::string_view parent,
                                                          const Labels& labels) {
  return Create(ctx, Kind::kView, key, parent, labels);
}

Result<std::vector<snapshots::Mount>> SnapshotStore::Create(const snapshots::Ctx& ctx, Kind kind,
                                                            std::string_view key,
                                                            std::string_view parent,
                                                            const Labels& labels) {
  if (key.empty()) return std::unexpected(InvalidArgument("snapshot key must not be empty"));
  if (Status s = ValidateLabels(labels); !s.ok()) return std::unexpected(s.Wrap("labels"));
  const std::string& ns = ctx.ns;
  std::shared_lock gc(db_.gc_lock());
  int64_t id = 0;
  std::vector<int64_t> parents;
  auto check = [&](Tx& tx) -> Status {
    if (auto it = labels.find(std::string(kTargetRefLabel)); it != labels.end()) {
      ASSIGN_OR_RETURN(std::optional<Row> target, ReadRow(tx, ns, name_, it->second));
      if (target && target->kind == Kind::kCommitted) {
        return AlreadyExists("target snapshot " + Quote(it->second) + ": already exists");
      }
    }
    ASSIGN_OR_RETURN(std::optional<Row> existing, ReadRow(tx, ns, name_, key));
    if (existing) return AlreadyExists("snapshot " + Quote(key) + ": already exists");
    return CheckParent(tx, ns, name_, parent);
  };
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, ns));
    RETURN_IF_ERROR(check(tx));
    ASSIGN_OR_RETURN(parents, ParentIds(tx, ns, name_, std::string(parent)));
    ASSIGN_OR_RETURN(id, NextSequence(tx, lease_type_));
    return Status::Ok();
  }));
  spdlog::debug("snapshot create sn={} ns={} key={} parent={} id={} kind={}", name_, ns, key,
                parent, id, KindName(kind));
  RETURN_IF_ERROR(backend_.Create(id, kind, parents));
  int64_t now = NowNanos();
  Status inserted = db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(check(tx));  // the world may have moved between the transactions
    RETURN_IF_ERROR(InsertRow(tx, ns, name_,
                              Row{std::string(key), id, std::string(parent), kind, now, now}));
    RETURN_IF_ERROR(WriteObjectLabels(tx, ns, label_kind_, key, labels));
    return AttachToLease(tx, ns, ctx.lease, lease_type_, key);
  });
  if (!inserted.ok()) {
    if (Status r = backend_.Remove(id); !r.ok()) {
      spdlog::warn("snapshot {}: remove data of failed create {}: {}", name_, id, r.ToString());
    }
    return std::unexpected(inserted);
  }
  return backend_.Mounts(id, kind, parents);
}

Result<std::vector<snapshots::Mount>> SnapshotStore::Mounts(const snapshots::Ctx& ctx,
                                                            std::string_view key) {
  Row row;
  std::vector<int64_t> parents;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(row, MustReadRow(tx, ctx.ns, name_, key));
    if (row.kind != Kind::kActive && row.kind != Kind::kView) {
      return FailedPrecondition("snapshot " + std::string(key) + " is not active or view");
    }
    ASSIGN_OR_RETURN(parents, ParentIds(tx, ctx.ns, name_, row.parent));
    return Status::Ok();
  }));
  return backend_.Mounts(row.id, row.kind, parents);
}

Status SnapshotStore::Commit(const snapshots::Ctx& ctx, std::string_view name,
                             std::string_view key, const Labels& labels) {
  if (name.empty()) return InvalidArgument("snapshot name must not be empty");
  if (Status s = ValidateLabels(labels); !s.ok()) return s.Wrap("labels");
  const std::string& ns = ctx.ns;
  Row active;
  auto check = [&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Row row, MustReadRow(tx, ns, name_, key));
    if (row.kind != Kind::kActive) {
      return FailedPrecondition("snapshot " + std::string(key) + " is not active");
    }
    if (active.id != 0 && row.id != active.id) return DoesNotExist(key);  // replaced meanwhile
    active = row;
    ASSIGN_OR_RETURN(std::optional<Row> taken, ReadRow(tx, ns, name_, name));
    if (taken) return AlreadyExists("snapshot " + Quote(name) + ": already exists");
    return Status::Ok();
  };
  RETURN_IF_ERROR(db_.View(check));
  // Measured outside any transaction: a large tree takes a while.
  ASSIGN_OR_RETURN(snapshots::Usage usage, backend_.Measure(active.id));
  spdlog::debug("snapshot commit sn={} ns={} key={} name={} id={}", name_, ns, key, name,
                active.id);
  return db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(check(tx));
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM snapshots WHERE namespace=? AND "
                                          "snapshotter=? AND key=?"));
    del.Bind(1, ns).Bind(2, name_).Bind(3, key);
    RETURN_IF_ERROR(del.Exec());
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, label_kind_, key));
    RETURN_IF_ERROR(DetachAll(tx, ns, lease_type_, key));
    int64_t now = NowNanos();
    RETURN_IF_ERROR(InsertRow(tx, ns, name_,
                              Row{std::string(name), active.id, active.parent, Kind::kCommitted,
                                  now, now, usage.size, usage.inodes}));
    RETURN_IF_ERROR(WriteObjectLabels(tx, ns, label_kind_, name, labels));
    return AttachToLease(tx, ns, ctx.lease, lease_type_, name);
  });
}

Status SnapshotStore::Remove(const snapshots::Ctx& ctx, std::string_view key) {
  const std::string& ns = ctx.ns;
  Row row;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(row, MustReadRow(tx, ns, name_, key));
    ASSIGN_OR_RETURN(Stmt kids, tx.Prepare("SELECT 1 FROM snapshots WHERE namespace=? AND "
                                           "snapshotter=? AND parent_key=? LIMIT 1"));
    kids.Bind(1, ns).Bind(2, name_).Bind(3, key);
    ASSIGN_OR_RETURN(bool has_child, kids.Step());
    if (has_child) return FailedPrecondition("cannot remove snapshot with child");
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM snapshots WHERE namespace=? AND "
                                          "snapshotter=? AND key=?"));
    del.Bind(1, ns).Bind(2, name_).Bind(3, key);
    RETURN_IF_ERROR(del.Exec());
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, label_kind_, key));
    return DetachAll(tx, ns, lease_type_, key);
  }));
  spdlog::debug("snapshot remove sn={} ns={} key={} id={}", name_, ns, key, row.id);
  // Shared, so a GC sweep never retries this removal's "rm-<id>" while it is under way.
  std::shared_lock gc(db_.gc_lock());
  if (Status s = backend_.Remove(row.id); !s.ok()) {
    // The row is gone; the collector's backend pass retries the data.
    spdlog::warn("snapshot {}: remove data {}: {}", name_, row.id, s.ToString());
  }
  return Status::Ok();
}

Result<snapshots::Info> SnapshotStore::Stat(const snapshots::Ctx& ctx, std::string_view key) {
  snapshots::Info info;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Row row, MustReadRow(tx, ctx.ns, name_, key));
    ASSIGN_OR_RETURN(Labels labels, ReadObjectLabels(tx, ctx.ns, label_kind_, key));
    info = InfoOf(row, std::move(labels));
    return Status::Ok();
  }));
  return info;
}

Result<snapshots::Info> SnapshotStore::Update(const snapshots::Ctx& ctx,
                                              const snapshots::Info& in,
                                              const std::vector<std::string>& fieldpaths) {
  if (in.name.empty()) return std::unexpected(InvalidArgument("snapshot name must not be empty"));
  LabelMask mask = ParseLabelMask(fieldpaths);
  if (!mask.other_paths.empty()) {
    return std::unexpected(InvalidArgument("cannot update " + Quote(mask.other_paths[0]) +
                                           " field on snapshot " + Quote(in.name)));
  }
  snapshots::Info out;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Row row, MustReadRow(tx, ctx.ns, name_, in.name));
    ASSIGN_OR_RETURN(Labels current, ReadObjectLabels(tx, ctx.ns, label_kind_, in.name));
    ASSIGN_OR_RETURN(Labels labels, ApplyLabelMask(current, in.labels, mask));
    RETURN_IF_ERROR(WriteObjectLabels(tx, ctx.ns, label_kind_, in.name, labels));
    row.updated = NowNanos();
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("UPDATE snapshots SET updated_at=? WHERE namespace=? "
                                         "AND snapshotter=? AND key=?"));
    st.Bind(1, row.updated).Bind(2, ctx.ns).Bind(3, name_).Bind(4, in.name);
    RETURN_IF_ERROR(st.Exec());
    out = InfoOf(row, std::move(labels));
    return Status::Ok();
  }));
  return out;
}

Status SnapshotStore::Walk(const snapshots::Ctx& ctx,
                           const std::function<Status(const snapshots::Info&)>& fn,
                           std::span<const std::string> filter_exprs) {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(filter_exprs));
  std::vector<snapshots::Info> infos;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare(std::string("SELECT ") + kRowColumns +
                                         " FROM snapshots WHERE namespace=? AND snapshotter=? "
                                         "ORDER BY key"));
    st.Bind(1, ctx.ns).Bind(2, name_);
    for (;;) {
      ASSIGN_OR_RETURN(bool more, st.Step());
      if (!more) break;
      Row row = RowFrom(st);
      ASSIGN_OR_RETURN(Labels labels, ReadObjectLabels(tx, ctx.ns, label_kind_, row.key));
      snapshots::Info info = InfoOf(row, std::move(labels));
      if (filter.Match(InfoFields(info))) infos.push_back(std::move(info));
    }
    return Status::Ok();
  }));
  for (const auto& info : infos) RETURN_IF_ERROR(fn(info));
  return Status::Ok();
}

Result<snapshots::Usage> SnapshotStore::Usage(const snapshots::Ctx& ctx, std::string_view key) {
  Row row;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(row, MustReadRow(tx, ctx.ns, name_, key));
    return Status::Ok();
  }));
  if (row.kind == Kind::kActive) return backend_.Measure(row.id);
  return snapshots::Usage{row.size, row.inodes};
}

Status SnapshotStore::Cleanup(const snapshots::Ctx&) {
  std::unique_lock gc(db_.gc_lock());
  std::set<int64_t> referenced;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(referenced, ReferencedSnapshotIds(tx, name_));
    return Status::Ok();
  }));
  // Entries that cannot be removed are logged and left for GC, which retries them.
  ASSIGN_OR_RETURN(int64_t removed, backend_.Sweep(referenced));
  spdlog::debug("snapshot {}: cleanup removed {} entries", name_, removed);
  return Status::Ok();
}

}  // namespace berth::metadata
