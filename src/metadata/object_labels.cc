#include "metadata/object_labels.h"

#include <chrono>

namespace berth::metadata {

Result<Labels> ReadObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                                std::string_view object) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT key, value FROM labels WHERE namespace=? AND "
                                       "kind=? AND object=?"));
  st.Bind(1, ns).Bind(2, kind).Bind(3, object);
  Labels out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.emplace(st.ColumnText(0), st.ColumnText(1));
  }
  return out;
}

Status DeleteObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                          std::string_view object) {
  ASSIGN_OR_RETURN(Stmt st,
                   tx.Prepare("DELETE FROM labels WHERE namespace=? AND kind=? AND object=?"));
  st.Bind(1, ns).Bind(2, kind).Bind(3, object);
  return st.Exec();
}

Status WriteObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                         std::string_view object, const Labels& labels) {
  RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, kind, object));
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO labels(namespace, kind, object, key, value) "
                                       "VALUES(?, ?, ?, ?, ?)"));
  for (const auto& [k, v] : labels) {
    if (v.empty()) continue;
    st.Bind(1, ns).Bind(2, kind).Bind(3, object).Bind(4, k).Bind(5, v);
    RETURN_IF_ERROR(st.Exec());
    st.Reset();
  }
  return Status::Ok();
}

LabelMask ParseLabelMask(const std::vector<std::string>& paths) {
  LabelMask mask;
  if (paths.empty()) {
    mask.replace_all = true;
    return mask;
  }
  for (const auto& p : paths) {
    if (p == "labels") {
      mask.replace_all = true;
    } else if (p.starts_with("labels.")) {
      mask.keys.push_back(p.substr(7));
    } else {
      mask.other_paths.push_back(p);
    }
  }
  return mask;
}

Result<Labels> ApplyLabelMask(const Labels& current, const Labels& incoming,
                              const LabelMask& mask) {
  Labels out = mask.replace_all ? Labels() : current;
  if (mask.replace_all) {
    for (const auto& [k, v] : incoming) {
      if (!v.empty()) out[k] = v;
    }
  }
  for (const auto& key : mask.keys) {
    auto it = incoming.find(key);
    if (it == incoming.end() || it->second.empty()) {
      out.erase(key);
    } else {
      out[key] = it->second;
    }
  }
  RETURN_IF_ERROR(ValidateLabels(out));
  return out;
}

Result<int64_t> NextSequence(Tx& tx, std::string_view name) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO sequences(name, value) VALUES(?, 1) "
                                       "ON CONFLICT(name) DO UPDATE SET value=value+1 "
                                       "RETURNING value"));
  st.Bind(1, name);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::unexpected(Internal("sequence " + std::string(name)));
  int64_t v = st.ColumnInt(0);
  RETURN_IF_ERROR(st.Exec());
  return v;
}

Status AttachToLease(Tx& tx, std::string_view ns, std::string_view lease, std::string_view type,
                     std::string_view id) {
  if (lease.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(Stmt q, tx.Prepare("SELECT 1 FROM leases WHERE namespace=? AND id=?"));
  q.Bind(1, ns).Bind(2, lease);
  ASSIGN_OR_RETURN(bool exists, q.Step());
  if (!exists) return NotFound("lease does not exist");
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO lease_resources(namespace, lease, type, id) "
                                       "VALUES(?, ?, ?, ?) ON CONFLICT DO NOTHING"));
  st.Bind(1, ns).Bind(2, lease).Bind(3, type).Bind(4, id);
  return st.Exec();
}

}  // namespace berth::metadata
