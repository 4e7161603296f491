#include "metadata/namespaces.h"

#include "common/clock.h"

namespace berth::metadata {
namespace {

Result<bool> Exists(Tx& tx, const std::string& name) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT 1 FROM namespaces WHERE name=?"));
  st.Bind(1, name);
  return st.Step();
}

Result<Labels> ReadLabels(Tx& tx, const std::string& name) {
  Labels labels;
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT key, value FROM namespace_labels "
                                       "WHERE namespace=? ORDER BY key"));
  st.Bind(1, name);
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    labels.emplace(st.ColumnText(0), st.ColumnText(1));
  }
  return labels;
}

Status PutLabel(Tx& tx, const std::string& name, const std::string& key,
                const std::string& value) {
  if (value.empty()) {
    ASSIGN_OR_RETURN(Stmt del,
                     tx.Prepare("DELETE FROM namespace_labels WHERE namespace=? AND key=?"));
    del.Bind(1, name).Bind(2, key);
    return del.Exec();
  }
  ASSIGN_OR_RETURN(Stmt put, tx.Prepare("INSERT INTO namespace_labels(namespace, key, value) "
                                        "VALUES(?, ?, ?) ON CONFLICT(namespace, key) "
                                        "DO UPDATE SET value=excluded.value"));
  put.Bind(1, name).Bind(2, key).Bind(3, value);
  return put.Exec();
}

// What a namespace still holds, in containerd's words ("images", "blobs", "containers",
// "snapshots on \"overlayfs\" snapshotter"). Each object table that later schema versions add
// is consulted only once it exists, so this check grows with the schema.
Result<std::vector<std::string>> RemainingObjects(Tx& tx, const std::string& name) {
  struct Owned {
    const char* table;
    const char* what;
  };
  static constexpr Owned kOwned[] = {
      {"images", "images"}, {"content", "blobs"}, {"containers", "containers"}};
  std::vector<std::string> out;
  auto table_exists = [&](const char* table) -> Result<bool> {
    ASSIGN_OR_RETURN(Stmt st,
                     tx.Prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"));
    st.Bind(1, std::string_view(table));
    return st.Step();
  };
  for (const Owned& o : kOwned) {
    ASSIGN_OR_RETURN(bool exists, table_exists(o.table));
    if (!exists) continue;
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare(std::string("SELECT 1 FROM ") + o.table +
                                         " WHERE namespace=? LIMIT 1"));
    st.Bind(1, name);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) out.emplace_back(o.what);
  }
  ASSIGN_OR_RETURN(bool snaps, table_exists("snapshots"));
  if (snaps) {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT DISTINCT snapshotter FROM snapshots "
                                         "WHERE namespace=? ORDER BY snapshotter"));
    st.Bind(1, name);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back("snapshots on " + Quote(st.ColumnText(0)) + " snapshotter");
    }
  }
  return out;
}

}  // namespace

Status EnsureNamespace(Tx& tx, const std::string& name) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO namespaces(name, created_at) VALUES(?, ?) "
                                       "ON CONFLICT(name) DO NOTHING"));
  st.Bind(1, name).Bind(2, NowNanos());
  return st.Exec();
}

Status NamespaceStore::Create(const std::string& name, const Labels& labels) {
  RETURN_IF_ERROR(ValidateIdentifier(name));
  if (Status s = ValidateLabels(labels); !s.ok()) return s.Wrap("namespace.Labels");
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, Exists(tx, name));
    if (exists) return AlreadyExists("namespace " + Quote(name));
    RETURN_IF_ERROR(EnsureNamespace(tx, name));
    for (const auto& [k, v] : labels) RETURN_IF_ERROR(PutLabel(tx, name, k, v));
    return Status::Ok();
  });
}

Result<Labels> NamespaceStore::GetLabels(const std::string& name) const {
  Labels labels;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(labels, ReadLabels(tx, name));
    return Status::Ok();
  }));
  return labels;
}

Result<std::vector<Namespace>> NamespaceStore::List() const {
  std::vector<Namespace> out;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT name FROM namespaces ORDER BY name"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back({st.ColumnText(0), {}});
    }
    for (Namespace& ns : out) {
      ASSIGN_OR_RETURN(ns.labels, ReadLabels(tx, ns.name));
    }
    return Status::Ok();
  }));
  return out;
}

Result<Labels> NamespaceStore::SetLabels(const std::string& name, bool replace,
                                         const LabelEdits& edits) {
  RETURN_IF_ERROR(ValidateIdentifier(name));
  for (const auto& [k, v] : edits) {
    if (Status s = ValidateLabel(k, v); !s.ok()) return std::unexpected(s.Wrap("namespace.Labels"));
  }
  Labels result;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, name));
    if (replace) {
      ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM namespace_labels WHERE namespace=?"));
      del.Bind(1, name);
      RETURN_IF_ERROR(del.Exec());
    }
    for (const auto& [k, v] : edits) RETURN_IF_ERROR(PutLabel(tx, name, k, v));
    ASSIGN_OR_RETURN(result, ReadLabels(tx, name));
    return Status::Ok();
  }));
  return result;
}

Status NamespaceStore::Delete(const std::string& name) {
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, Exists(tx, name));
    if (!exists) return NotFound("namespace " + Quote(name));
    ASSIGN_OR_RETURN(auto remaining, RemainingObjects(tx, name));
    if (!remaining.empty()) {
      std::string what;
      for (size_t i = 0; i < remaining.size(); ++i) what += (i ? ", " : "") + remaining[i];
      return FailedPrecondition("namespace " + Quote(name) + " must be empty, but it still has " +
                                what);
    }
    // Leases and ingests go with the namespace (as in containerd); their on-disk data is
    // then unreferenced and collected by GC.
    ASSIGN_OR_RETURN(Stmt labels, tx.Prepare("DELETE FROM labels WHERE namespace=?"));
    labels.Bind(1, name);
    RETURN_IF_ERROR(labels.Exec());
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM namespaces WHERE name=?"));
    st.Bind(1, name);
    return st.Exec();
  });
}

}  // namespace berth::metadata
