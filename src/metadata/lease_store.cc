#include "metadata/lease_store.h"

#include <map>

#include "common/digest.h"
#include "common/filters.h"
#include "metadata/image_store.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

Status LeaseNotFound(const std::string& id) { return NotFound("lease " + Quote(id)); }

Result<bool> LeaseExists(Tx& tx, const std::string& ns, const std::string& id) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT 1 FROM leases WHERE namespace=? AND id=?"));
  st.Bind(1, ns).Bind(2, id);
  return st.Step();
}

filters::Adaptor LeaseFields(const Lease& l) {
  return [&l](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.empty()) return std::nullopt;
    if (fp[0] == "id") {
      if (l.id.empty()) return std::nullopt;
      return l.id;
    }
    if (fp[0] == "labels") return filters::LookupMap(l.labels, fp.subspan(1));
    return std::nullopt;
  };
}

}  // namespace

Result<LeaseResource> NormalizeLeaseResource(const LeaseResource& r) {
  std::string_view type = r.type;
  std::string_view head = type.substr(0, type.find('/'));
  if (head == "content" || head == "ingests") {
    if (head.size() != type.size()) {
      return std::unexpected(InvalidArgument("invalid resource type " + r.type));
    }
    if (head == "content") {
      if (Status s = ValidateDigest(r.id); !s.ok()) {
        return std::unexpected(
            InvalidArgument("invalid content resource id " + r.id + ": " + s.message()));
      }
    }
    return r;
  }
  if (head == "snapshots") {
    // Exactly "snapshots/<snapshotter>". containerd would also take "snapshots/" (an empty
    // snapshotter name, which nothing can ever create); we refuse it.
    size_t slash = type.find('/');
    if (slash == std::string_view::npos || slash + 1 == type.size() ||
        type.find('/', slash + 1) != std::string_view::npos) {
      return std::unexpected(InvalidArgument("invalid snapshot resource type " + r.type));
    }
    return r;
  }
  return std::unexpected(Unimplemented("resource type " + r.type + " not supported yet"));
}

Result<Lease> LeaseStore::Create(const std::string& ns, const std::string& id,
                                 const Labels& labels) {
  if (id.empty()) return std::unexpected(InvalidArgument("lease id must be provided"));
  if (Status s = ValidateLabels(labels); !s.ok()) return std::unexpected(s.Wrap("lease.Labels"));
  Lease lease{.id = id, .created_at = NowNanos(), .labels = {}};
  for (const auto& [k, v] : labels) {
    if (!v.empty()) lease.labels.emplace(k, v);
  }
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, ns));
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO leases(namespace, id, created_at) "
                                         "VALUES(?, ?, ?) ON CONFLICT DO NOTHING"));
    st.Bind(1, ns).Bind(2, id).Bind(3, lease.created_at);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return AlreadyExists("lease " + Quote(id));
    return WriteObjectLabels(tx, ns, kKindLease, id, lease.labels);
  }));
  return lease;
}

Status LeaseStore::Delete(const std::string& ns, const std::string& id) {
  return db_.Update([&](Tx& tx) -> Status {
    // lease_resources rows go with the lease (ON DELETE CASCADE).
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM leases WHERE namespace=? AND id=?"));
    st.Bind(1, ns).Bind(2, id);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return LeaseNotFound(id);
    return DeleteObjectLabels(tx, ns, kKindLease, id);
  });
}

Result<std::vector<Lease>> LeaseStore::List(const std::string& ns,
                                            std::span<const std::string> exprs) const {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(exprs));
  std::vector<Lease> all;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT id, created_at FROM leases WHERE namespace=? "
                                         "ORDER BY id"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      all.push_back({.id = st.ColumnText(0), .created_at = st.ColumnInt(1), .labels = {}});
    }
    if (all.empty()) return Status::Ok();
    // One pass over the namespace's lease labels instead of a query per lease.
    std::map<std::string, Labels> labels;
    ASSIGN_OR_RETURN(Stmt ls, tx.Prepare("SELECT object, key, value FROM labels "
                                         "WHERE namespace=? AND kind=?"));
    ls.Bind(1, ns).Bind(2, std::string_view(kKindLease));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, ls.Step());
      if (!row) break;
      labels[ls.ColumnText(0)].emplace(ls.ColumnText(1), ls.ColumnText(2));
    }
    for (Lease& l : all) {
      auto it = labels.find(l.id);
      if (it != labels.end()) l.labels = std::move(it->second);
    }
    return Status::Ok();
  }));
  if (filter.MatchesAll()) return all;
  std::vector<Lease> out;
  for (Lease& l : all) {
    if (filter.Match(LeaseFields(l))) out.push_back(std::move(l));
  }
  return out;
}

Status LeaseStore::AddResource(const std::string& ns, const std::string& lease,
                               const LeaseResource& r) {
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, LeaseExists(tx, ns, lease));
    if (!exists) return LeaseNotFound(lease);
    ASSIGN_OR_RETURN(LeaseResource res, NormalizeLeaseResource(r));
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO lease_resources(namespace, lease, type, id) "
                                         "VALUES(?, ?, ?, ?) ON CONFLICT DO NOTHING"));
    st.Bind(1, ns).Bind(2, lease).Bind(3, res.type).Bind(4, res.id);
    return st.Exec();
  });
}

Status LeaseStore::DeleteResource(const std::string& ns, const std::string& lease,
                                  const LeaseResource& r) {
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, LeaseExists(tx, ns, lease));
    if (!exists) return LeaseNotFound(lease);
    ASSIGN_OR_RETURN(LeaseResource res, NormalizeLeaseResource(r));
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM lease_resources WHERE namespace=? AND "
                                         "lease=? AND type=? AND id=?"));
    st.Bind(1, ns).Bind(2, lease).Bind(3, res.type).Bind(4, res.id);
    return st.Exec();
  });
}

Result<std::vector<LeaseResource>> LeaseStore::ListResources(const std::string& ns,
                                                             const std::string& lease) const {
  std::vector<LeaseResource> out;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(bool exists, LeaseExists(tx, ns, lease));
    if (!exists) return LeaseNotFound(lease);
    // "content" < "ingests" < "snapshots/<name>" byte-wise: the order containerd's buckets give.
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT type, id FROM lease_resources "
                                         "WHERE namespace=? AND lease=? ORDER BY type, id"));
    st.Bind(1, ns).Bind(2, lease);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back({.id = st.ColumnText(1), .type = st.ColumnText(0)});
    }
    return Status::Ok();
  }));
  return out;
}

}  // namespace berth::metadata
