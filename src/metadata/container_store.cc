#include "metadata/container_store.h"

#include "common/filters.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

void DropEmptyValues(Labels& m) {
  std::erase_if(m, [](const auto& kv) { return kv.second.empty(); });
}

// containerd's validateContainer, in its order and words.
Status ValidateContainer(const Container& c) {
  if (Status s = ValidateIdentifier(c.id); !s.ok()) return s.Wrap("container.ID");
  if (c.extensions.contains("")) {
    return InvalidArgument("container.Extension keys must not be zero-length");
  }
  if (Status s = ValidateLabels(c.labels); !s.ok()) return s.Wrap("containers.Labels");
  if (c.runtime_name.empty()) return InvalidArgument("container.Runtime.Name must be set");
  if (!c.spec) return InvalidArgument("container.Spec must be set");
  if (!c.snapshot_key.empty() && c.snapshotter.empty()) {
    return InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set");
  }
  return Status::Ok();
}

constexpr char kSelectContainer[] =
    "SELECT id, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, "
    "snapshotter, snapshot_key, created_at, updated_at FROM containers ";

// Reads the current row of a statement built on kSelectContainer (labels and extensions not
// included).
Container ContainerFromRow(const Stmt& st) {
  Container c;
  c.id = st.ColumnText(0);
  c.image = st.ColumnText(1);
  c.runtime_name = st.ColumnText(2);
  if (!st.ColumnIsNull(3)) c.runtime_options = AnyValue{st.ColumnText(3), st.ColumnText(4)};
  c.spec = AnyValue{st.ColumnText(5), st.ColumnText(6)};
  c.snapshotter = st.ColumnText(7);
  c.snapshot_key = st.ColumnText(8);
  c.created_at = st.ColumnInt(9);
  c.updated_at = st.ColumnInt(10);
  return c;
}

// Extensions of one container (`id` set) or of every container in the namespace.
Result<std::map<std::string, std::map<std::string, AnyValue>>> ReadExtensions(
    Tx& tx, const std::string& ns, const std::string* id) {
  std::string sql =
      "SELECT container, name, type_url, value FROM container_extensions "
      "WHERE namespace=?";
  if (id) sql += " AND container=?";
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare(sql));
  st.Bind(1, ns);
  if (id) st.Bind(2, *id);
  std::map<std::string, std::map<std::string, AnyValue>> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out[st.ColumnText(0)].emplace(st.ColumnText(1), AnyValue{st.ColumnText(2), st.ColumnText(3)});
  }
  return out;
}

Result<std::optional<Container>> ReadContainer(Tx& tx, const std::string& ns,
                                               const std::string& id) {
  ASSIGN_OR_RETURN(Stmt st,
                   tx.Prepare(std::string(kSelectContainer) + "WHERE namespace=? AND id=?"));
  st.Bind(1, ns).Bind(2, id);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Container>();
  Container c = ContainerFromRow(st);
  ASSIGN_OR_RETURN(c.labels, ReadObjectLabels(tx, ns, kKindContainer, id));
  ASSIGN_OR_RETURN(auto extensions, ReadExtensions(tx, ns, &id));
  c.extensions = std::move(extensions[id]);
  return std::optional<Container>(std::move(c));
}

// Binds the runtime options (NULL, NULL when absent) at `i` and `i + 1`.
void BindOptional(Stmt& st, int i, const std::optional<AnyValue>& any) {
  if (any) {
    st.Bind(i, any->type_url).BindBlob(i + 1, any->value);
  } else {
    st.BindNull(i).BindNull(i + 1);
  }
}

// Replaces the labels and extensions of a container whose row exists.
Status WriteChildren(Tx& tx, const std::string& ns, const Container& c) {
  RETURN_IF_ERROR(WriteObjectLabels(tx, ns, kKindContainer, c.id, c.labels));
  ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM container_extensions WHERE namespace=? "
                                        "AND container=?"));
  del.Bind(1, ns).Bind(2, c.id);
  RETURN_IF_ERROR(del.Exec());
  ASSIGN_OR_RETURN(Stmt ins, tx.Prepare("INSERT INTO container_extensions(namespace, container, "
                                        "name, type_url, value) VALUES(?, ?, ?, ?, ?)"));
  for (const auto& [name, any] : c.extensions) {
    ins.Bind(1, ns).Bind(2, c.id).Bind(3, name).Bind(4, any.type_url).BindBlob(5, any.value);
    RETURN_IF_ERROR(ins.Exec());
    ins.Reset();
  }
  return Status::Ok();
}

filters::Adaptor ContainerFields(const Container& c) {
  // containerd's adaptContainer: extra path components after `id` or `image` are ignored.
  return [&c](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.empty()) return std::nullopt;
    auto non_empty = [](const std::string& v) -> std::optional<std::string> {
      if (v.empty()) return std::nullopt;
      return v;
    };
    if (fp[0] == "id") return non_empty(c.id);
    if (fp[0] == "runtime") {
      if (fp.size() < 2 || fp[1] != "name") return std::nullopt;
      return non_empty(c.runtime_name);
    }
    if (fp[0] == "image") return non_empty(c.image);
    if (fp[0] == "labels") return filters::LookupMap(c.labels, fp.subspan(1));
    return std::nullopt;
  };
}

}  // namespace

Result<Container> ContainerStore::Get(const std::string& ns, const std::string& id) const {
  std::optional<Container> c;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(c, ReadContainer(tx, ns, id));
    return Status::Ok();
  }));
  if (!c) return std::unexpected(NotFound("container " + Quote(id) + " in namespace " + Quote(ns)));
  return std::move(*c);
}

Result<std::vector<Container>> ContainerStore::List(const std::string& ns,
                                                    std::span<const std::string> exprs) const {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(exprs));
  std::vector<Container> all;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st,
                     tx.Prepare(std::string(kSelectContainer) + "WHERE namespace=? ORDER BY id"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      all.push_back(ContainerFromRow(st));
    }
    if (all.empty()) return Status::Ok();
    // One pass over the namespace's container labels and extensions, not a query per row.
    std::map<std::string, Labels> labels;
    ASSIGN_OR_RETURN(Stmt ls, tx.Prepare("SELECT object, key, value FROM labels "
                                         "WHERE namespace=? AND kind=?"));
    ls.Bind(1, ns).Bind(2, std::string_view(kKindContainer));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, ls.Step());
      if (!row) break;
      labels[ls.ColumnText(0)].emplace(ls.ColumnText(1), ls.ColumnText(2));
    }
    ASSIGN_OR_RETURN(auto extensions, ReadExtensions(tx, ns, nullptr));
    for (Container& c : all) {
      if (auto it = labels.find(c.id); it != labels.end()) c.labels = std::move(it->second);
      if (auto it = extensions.find(c.id); it != extensions.end()) {
        c.extensions = std::move(it->second);
      }
    }
    return Status::Ok();
  }));
  if (filter.MatchesAll()) return all;
  std::vector<Container> out;
  for (Container& c : all) {
    if (filter.Match(ContainerFields(c))) out.push_back(std::move(c));
  }
  return out;
}

Result<Container> ContainerStore::Create(const std::string& ns, const Container& container) {
  if (Status s = ValidateContainer(container); !s.ok()) {
    return std::unexpected(s.Wrap("create container failed validation"));
  }
  Container c = container;
  DropEmptyValues(c.labels);
  c.created_at = c.updated_at = NowNanos();
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, ns));
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO containers(namespace, id, image, "
                                         "runtime_name, runtime_options_type, runtime_options, "
                                         "spec_type, spec, snapshotter, snapshot_key, created_at, "
                                         "updated_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                         "ON CONFLICT DO NOTHING"));
    st.Bind(1, ns).Bind(2, c.id).Bind(3, c.image).Bind(4, c.runtime_name);
    BindOptional(st, 5, c.runtime_options);
    st.Bind(7, c.spec->type_url)
        .BindBlob(8, c.spec->value)
        .Bind(9, c.snapshotter)
        .Bind(10, c.snapshot_key)
        .Bind(11, c.created_at)
        .Bind(12, c.updated_at);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return AlreadyExists("container " + Quote(c.id));
    return WriteChildren(tx, ns, c);
  }));
  return c;
}

Result<Container> ContainerStore::Update(const std::string& ns, const Container& container,
                                         const std::vector<std::string>& paths) {
  if (container.id.empty()) {
    return std::unexpected(InvalidArgument("must specify a container id"));
  }
  Container updated;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Container> current, ReadContainer(tx, ns, container.id));
    if (!current) return NotFound("container " + Quote(container.id));
    updated = *current;
    std::vector<std::string> fieldpaths = paths;
    if (fieldpaths.empty()) {
      // A full replace covers only these; the immutable fields must match so that making
      // them mutable later does not silently change what an old client's call does.
      fieldpaths = {"labels", "spec", "extensions", "image", "snapshotkey"};
      if (current->snapshotter != container.snapshotter) {
        return InvalidArgument("container.Snapshotter field is immutable");
      }
      if (current->runtime_name != container.runtime_name) {
        return InvalidArgument("container.Runtime.Name field is immutable");
      }
    }
    // In the order given, as containerd applies them: "labels.a" then "labels" differs from
    // "labels" then "labels.a".
    for (const std::string& p : fieldpaths) {
      if (p.starts_with("labels.")) {
        std::string key = p.substr(7);
        auto it = container.labels.find(key);
        if (it == container.labels.end() || it->second.empty()) {
          updated.labels.erase(key);
        } else {
          updated.labels[key] = it->second;
        }
      } else if (p.starts_with("extensions.")) {
        std::string name = p.substr(11);
        auto it = container.extensions.find(name);
        if (it == container.extensions.end()) {
          updated.extensions.erase(name);
        } else {
          updated.extensions[name] = it->second;
        }
      } else if (p == "labels") {
        updated.labels = container.labels;
      } else if (p == "spec") {
        updated.spec = container.spec;
      } else if (p == "extensions") {
        updated.extensions = container.extensions;
      } else if (p == "image") {
        updated.image = container.image;
      } else if (p == "snapshotkey") {
        updated.snapshot_key = container.snapshot_key;
      } else {
        return InvalidArgument("cannot update " + Quote(p) + " field on " + Quote(container.id));
      }
    }
    DropEmptyValues(updated.labels);
    if (Status s = ValidateContainer(updated); !s.ok()) {
      return s.Wrap("update failed validation");
    }
    updated.updated_at = NowNanos();
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("UPDATE containers SET image=?, spec_type=?, spec=?, "
                                         "snapshot_key=?, updated_at=? WHERE namespace=? AND "
                                         "id=?"));
    st.Bind(1, updated.image)
        .Bind(2, updated.spec->type_url)
        .BindBlob(3, updated.spec->value)
        .Bind(4, updated.snapshot_key)
        .Bind(5, updated.updated_at)
        .Bind(6, ns)
        .Bind(7, updated.id);
    RETURN_IF_ERROR(st.Exec());
    return WriteChildren(tx, ns, updated);
  }));
  return updated;
}

Status ContainerStore::Delete(const std::string& ns, const std::string& id) {
  return db_.Update([&](Tx& tx) -> Status {
    // Extensions go with the row (ON DELETE CASCADE).
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM containers WHERE namespace=? AND id=?"));
    st.Bind(1, ns).Bind(2, id);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return NotFound("container " + id);
    return DeleteObjectLabels(tx, ns, kKindContainer, id);
  });
}

}  // namespace berth::metadata
