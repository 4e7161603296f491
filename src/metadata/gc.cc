#include "metadata/gc.h"

#include <cstdio>
#include <ctime>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <shared_mutex>

#include "common/log.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

constexpr std::string_view kRootLabel = "containerd.io/gc.root";
constexpr std::string_view kContentRef = "containerd.io/gc.ref.content";
constexpr std::string_view kSnapshotRef = "containerd.io/gc.ref.snapshot.";
constexpr std::string_view kExpireLabel = "containerd.io/gc.expire";
constexpr std::string_view kFlatLabel = "containerd.io/gc.flat";

// A content reference label is the bare prefix or the prefix followed by '.' or '/'.
bool IsContentRef(std::string_view key) {
  if (!key.starts_with(kContentRef)) return false;
  return key.size() == kContentRef.size() || key[kContentRef.size()] == '.' ||
         key[kContentRef.size()] == '/';
}

// What one namespace holds, read in one transaction.
struct NamespaceGraph {
  std::set<std::string> content;                                 // digests with a row
  std::map<std::string, std::vector<std::string>> content_refs;  // digest → referenced digests
  std::set<std::string> roots;                                   // content marked as roots
  std::set<std::string> flat_roots;                              // kept, refs not followed
  std::map<std::string, std::string> ingests;                    // ref → expected digest
  std::set<std::string> live_ingests;
  // Snapshots are named "<snapshotter>/<key>".
  std::set<std::string> snapshot_refs;   // snapshot roots (images, containers, leases)
  std::set<std::string> flat_snapshots;  // roots from flat leases: only parents followed
  std::map<std::string, std::set<std::string>> content_snapshot_refs;  // digest → snapshots
  std::map<std::string, std::string> snapshots;                        // → parent ("" = none)
  std::map<std::string, std::vector<std::string>> snapshot_content_refs;
  std::map<std::string, std::set<std::string>> snapshot_snapshot_refs;
  std::vector<std::string> expired_leases;
};

using LabelRows = std::map<std::string, std::vector<std::pair<std::string, std::string>>>;

Result<LabelRows> LabelsOfKind(Tx& tx, const std::string& ns, const char* kind) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT object, key, value FROM labels WHERE "
                                                 "namespace=? AND kind=?"));
  st.Bind(1, ns).Bind(2, kind);
  LabelRows out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out[st.ColumnText(0)].emplace_back(st.ColumnText(1), st.ColumnText(2));
  }
  return out;
}

// Follows gc.ref labels from one object's labels into `refs`/`snapshot_refs`.
void CollectRefs(const std::vector<std::pair<std::string, std::string>>& labels,
                 std::vector<std::string>* refs, std::set<std::string>* snapshot_refs) {
  for (const auto& [k, v] : labels) {
    if (IsContentRef(k)) {
      refs->push_back(v);
    } else if (k.starts_with(kSnapshotRef)) {
      std::string snapshotter = k.substr(kSnapshotRef.size());
      if (auto slash = snapshotter.find('/'); slash != std::string::npos) {
        snapshotter.resize(slash);
      }
      snapshot_refs->insert(snapshotter + "/" + v);
    }
  }
}

Result<NamespaceGraph> ReadGraph(Tx& tx, const std::string& ns, int64_t now) {
  NamespaceGraph g;
  {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT digest FROM content WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      g.content.insert(st.ColumnText(0));
    }
  }
  ASSIGN_OR_RETURN(LabelRows content_labels, LabelsOfKind(tx, ns, kKindContent));
  for (const auto& [digest, labels] : content_labels) {
    // Snapshots a blob references stay only while the blob itself is reachable.
    CollectRefs(labels, &g.content_refs[digest], &g.content_snapshot_refs[digest]);
    for (const auto& [k, v] : labels) {
      if (k == kRootLabel) g.roots.insert(digest);
    }
  }
  // Images: the target and the image's own gc.ref labels.
  {
    ASSIGN_OR_RETURN(Stmt st,
                     tx.Prepare("SELECT name, digest FROM images WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      g.roots.insert(st.ColumnText(1));
    }
    ASSIGN_OR_RETURN(LabelRows image_labels, LabelsOfKind(tx, ns, kKindImage));
    for (const auto& [name, labels] : image_labels) {
      std::vector<std::string> refs;
      CollectRefs(labels, &refs, &g.snapshot_refs);
      g.roots.insert(refs.begin(), refs.end());
    }
  }
  // Containers: their snapshot and the container's own gc.ref labels.
  {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT snapshotter, snapshot_key FROM "
                                                   "containers WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      std::string sn = st.ColumnText(0);
      if (!sn.empty()) g.snapshot_refs.insert(sn + "/" + st.ColumnText(1));
    }
    ASSIGN_OR_RETURN(LabelRows container_labels, LabelsOfKind(tx, ns, kKindContainer));
    for (const auto& [id, labels] : container_labels) {
      std::vector<std::string> refs;
      CollectRefs(labels, &refs, &g.snapshot_refs);
      g.roots.insert(refs.begin(), refs.end());
    }
  }
  // Ingests: roots while unexpired outside a lease; an ingest references what it expects.
  {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT ref, expected, expires_at FROM ingests "
                                                   "WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      std::string ref = st.ColumnText(0);
      g.ingests[ref] = st.ColumnText(1);
      if (!st.ColumnIsNull(2) && st.ColumnInt(2) > now) g.live_ingests.insert(ref);
    }
  }
  // Leases.
  ASSIGN_OR_RETURN(LabelRows lease_labels, LabelsOfKind(tx, ns, kKindLease));
  std::vector<std::pair<std::string, bool>> live_leases;  // id, flat
  {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT id FROM leases WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      std::string id = st.ColumnText(0);
      bool expired = false, flat = false;
      for (const auto& [k, v] : lease_labels[id]) {
        if (k == kExpireLabel) {
          auto when = ParseRfc3339(v);
          if (!when) {
            spdlog::info("gc: ignoring invalid expiration {} on lease {}", v, id);
          } else if (*when < now) {
            expired = true;
          }
        } else if (k == kFlatLabel) {
          flat = true;
        }
      }
      if (expired) {
        g.expired_leases.push_back(id);
      } else {
        live_leases.emplace_back(id, flat);
      }
    }
  }
  for (const auto& [id, flat] : live_leases) {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT type, id FROM lease_resources WHERE "
                                                   "namespace=? AND lease=?"));
    st.Bind(1, ns).Bind(2, id);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      std::string type = st.ColumnText(0), rid = st.ColumnText(1);
      if (type == "content") {
        (flat ? g.flat_roots : g.roots).insert(rid);
      } else if (type == "ingests") {
        g.live_ingests.insert(rid);
      } else if (type.starts_with("snapshots/")) {
        (flat ? g.flat_snapshots : g.snapshot_refs).insert(type.substr(10) + "/" + rid);
      }
    }
  }
  // Snapshots: rows, their labels (kind "snapshot/<snapshotter>": gc.root and gc.ref edges).
  {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT snapshotter, key, parent_key FROM "
                                                   "snapshots WHERE namespace=?"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      std::string sn = st.ColumnText(0), parent = st.ColumnText(2);
      g.snapshots[sn + "/" + st.ColumnText(1)] = parent.empty() ? "" : sn + "/" + parent;
    }
    ASSIGN_OR_RETURN(Stmt ls,
                     tx.Prepare("SELECT kind, object, key, value FROM labels WHERE namespace=? "
                                "AND kind LIKE 'snapshot/%'"));
    ls.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, ls.Step());
      if (!row) break;
      std::string id = ls.ColumnText(0).substr(9) + "/" + ls.ColumnText(1);
      std::vector<std::pair<std::string, std::string>> one = {{ls.ColumnText(2), ls.ColumnText(3)}};
      if (one[0].first == kRootLabel) g.snapshot_refs.insert(id);
      CollectRefs(one, &g.snapshot_content_refs[id], &g.snapshot_snapshot_refs[id]);
    }
  }
  return g;
}

struct Marked {
  std::set<std::string> content;
  std::set<std::string> snapshots;
};

// Marks content and snapshots reachable from the roots. A snapshot keeps its parent; labels
// on content and snapshots add edges of both kinds.
Marked Mark(const NamespaceGraph& g) {
  Marked m;
  std::deque<std::pair<bool, std::string>> queue;  // (is snapshot, id)
  auto visit = [&](const std::string& d) {
    if (m.content.insert(d).second) queue.emplace_back(false, d);
  };
  auto visit_snapshot = [&](const std::string& s) {
    if (g.snapshots.contains(s) && m.snapshots.insert(s).second) queue.emplace_back(true, s);
  };
  for (const auto& d : g.roots) visit(d);
  for (const auto& s : g.snapshot_refs) visit_snapshot(s);
  for (const auto& ref : g.live_ingests) {
    auto it = g.ingests.find(ref);
    if (it != g.ingests.end() && !it->second.empty()) visit(it->second);
  }
  // Flat-leased snapshots: kept with their parent chains, labels not followed.
  for (const auto& s : g.flat_snapshots) {
    for (std::string cur = s; g.snapshots.contains(cur) && m.snapshots.insert(cur).second;) {
      cur = g.snapshots.at(cur);
    }
  }
  while (!queue.empty()) {
    auto [is_snapshot, d] = std::move(queue.front());
    queue.pop_front();
    if (is_snapshot) {
      const std::string& parent = g.snapshots.at(d);
      if (!parent.empty()) visit_snapshot(parent);
      if (auto it = g.snapshot_content_refs.find(d); it != g.snapshot_content_refs.end()) {
        for (const auto& c : it->second) visit(c);
      }
      if (auto it = g.snapshot_snapshot_refs.find(d); it != g.snapshot_snapshot_refs.end()) {
        for (const auto& s : it->second) visit_snapshot(s);
      }
      continue;
    }
    if (auto it = g.content_refs.find(d); it != g.content_refs.end()) {
      for (const auto& child : it->second) visit(child);
    }
    if (auto it = g.content_snapshot_refs.find(d); it != g.content_snapshot_refs.end()) {
      for (const auto& s : it->second) visit_snapshot(s);
    }
  }
  m.content.insert(g.flat_roots.begin(), g.flat_roots.end());  // kept, not followed
  return m;
}

// Deletes from namespace `ns` the rows `m` did not reach: content, snapshots (all descendants of
// an unreachable snapshot are unreachable too, so they go in the same transaction), ingests
// that are neither live nor leased, and expired leases.
Result<GcStats> SweepNamespace(Tx& tx, const std::string& ns, const NamespaceGraph& g,
                               const Marked& m) {
  GcStats stats;
  for (const auto& digest : g.content) {
    if (m.content.contains(digest)) continue;
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM content WHERE namespace=? AND digest=?"));
    del.Bind(1, ns).Bind(2, digest);
    RETURN_IF_ERROR(del.Exec());
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, kKindContent, digest));
    ++stats.content_removed;
    spdlog::debug("gc: remove content ns={} digest={}", ns, digest);
  }
  for (const auto& [id, parent] : g.snapshots) {
    if (m.snapshots.contains(id)) continue;
    size_t slash = id.find('/');
    std::string sn = id.substr(0, slash), key = id.substr(slash + 1);
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM snapshots WHERE namespace=? AND "
                                          "snapshotter=? AND key=?"));
    del.Bind(1, ns).Bind(2, sn).Bind(3, key);
    RETURN_IF_ERROR(del.Exec());
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, std::string(kKindSnapshotPrefix) + sn, key));
    ++stats.snapshots_removed;
    spdlog::debug("gc: remove snapshot ns={} snapshotter={} key={}", ns, sn, key);
  }
  for (const auto& [ref, expected] : g.ingests) {
    if (g.live_ingests.contains(ref)) continue;
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM ingests WHERE namespace=? AND ref=?"));
    del.Bind(1, ns).Bind(2, ref);
    RETURN_IF_ERROR(del.Exec());
    ++stats.ingests_removed;
    spdlog::debug("gc: remove ingest ns={} ref={}", ns, ref);
  }
  for (const auto& id : g.expired_leases) {
    ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM leases WHERE namespace=? AND id=?"));
    del.Bind(1, ns).Bind(2, id);
    RETURN_IF_ERROR(del.Exec());
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, kKindLease, id));
    ++stats.leases_removed;
    spdlog::debug("gc: remove expired lease ns={} id={}", ns, id);
  }
  return stats;
}

}  // namespace

Result<int64_t> ParseRfc3339(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
  int y, mo, d, h, mi, s;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s,
                  &consumed) != 6 ||
      consumed != 19) {
    return std::unexpected(InvalidArgument("not an RFC 3339 time: " + text));
  }
  size_t pos = 19;
  int64_t frac_ns = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100000000;
    size_t start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      if (scale > 0) frac_ns += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::unexpected(InvalidArgument("not an RFC 3339 time: " + text));
  }
  int64_t offset = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-') &&
             text[pos + 3] == ':') {
    int oh = std::atoi(text.substr(pos + 1, 2).c_str());
    int om = std::atoi(text.substr(pos + 4, 2).c_str());
    offset = (oh * 3600 + om * 60) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::unexpected(InvalidArgument("not an RFC 3339 time: " + text));
  }
  if (pos != text.size()) return std::unexpected(InvalidArgument("not an RFC 3339 time: " + text));
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  int64_t secs = static_cast<int64_t>(timegm(&tm)) - offset;
  // Nanoseconds overflow int64 past 2262; such far-off expiries mean "never" for us.
  constexpr int64_t kMaxSecs = std::numeric_limits<int64_t>::max() / 1000000000 - 1;
  if (secs > kMaxSecs) return std::numeric_limits<int64_t>::max();
  if (secs < -kMaxSecs) return std::numeric_limits<int64_t>::min();
  return secs * 1000000000 + frac_ns;
}


Result<ContentReferences> ReferencedContent(Tx& tx) {
  ContentReferences refs;
  ASSIGN_OR_RETURN(Stmt blobs, tx.Prepare("SELECT digest FROM content UNION "
                                          "SELECT expected FROM ingests WHERE expected != ''"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, blobs.Step());
    if (!row) break;
    refs.blobs.insert(blobs.ColumnText(0));
  }
  ASSIGN_OR_RETURN(Stmt ingests, tx.Prepare("SELECT backend_ref FROM ingests"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, ingests.Step());
    if (!row) break;
    refs.ingests.insert(ingests.ColumnText(0));
  }
  return refs;
}

Result<std::set<int64_t>> ReferencedSnapshotIds(Tx& tx, std::string_view snapshotter) {
  std::set<int64_t> ids;
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT id FROM snapshots WHERE snapshotter=?"));
  st.Bind(1, snapshotter);
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ids.insert(st.ColumnInt(0));
  }
  return ids;
}

Result<GcStats> GarbageCollector::Collect() { return CollectAt(NowNanos()); }

Result<GcStats> GarbageCollector::CollectAt(int64_t now) {
  std::lock_guard pass(pass_mu_);
  auto start = std::chrono::steady_clock::now();
  GcStats stats;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    std::vector<std::string> namespaces;
    {
      ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT name FROM namespaces"));
      for (;;) {
        ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        namespaces.push_back(st.ColumnText(0));
      }
    }
    for (const auto& ns : namespaces) {
      ASSIGN_OR_RETURN(NamespaceGraph g, ReadGraph(tx, ns, now));
      ASSIGN_OR_RETURN(GcStats removed, SweepNamespace(tx, ns, g, Mark(g)));
      stats.content_removed += removed.content_removed;
      stats.snapshots_removed += removed.snapshots_removed;
      stats.ingests_removed += removed.ingests_removed;
      stats.leases_removed += removed.leases_removed;
    }
    return Status::Ok();
  }));
  SweepBackends(stats);
  stats.duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  if (stats.content_removed || stats.ingests_removed || stats.leases_removed ||
      stats.snapshots_removed || stats.backend_removed || stats.backend_errors) {
    spdlog::info("gc: removed content={} ingests={} leases={} snapshots={} backend={} in {}us{}",
                 stats.content_removed, stats.ingests_removed, stats.leases_removed,
                 stats.snapshots_removed, stats.backend_removed, stats.duration.count(),
                 stats.backend_errors ? " (some backends could not be swept)" : "");
  }
  return stats;
}

// Under the exclusive GC lock nothing can make backend data reachable between reading the
// references and removing what is unreferenced.
void GarbageCollector::SweepBackends(GcStats& stats) {
  std::unique_lock gc(db_.gc_lock());
  auto failed = [&](std::string_view what, const Status& s) {
    spdlog::error("gc: sweep {}: {}", what, s.ToString());
    ++stats.backend_errors;
  };
  if (!content_.empty()) {
    ContentReferences refs;
    Status read = db_.View([&](Tx& tx) -> Status {
      ASSIGN_OR_RETURN(refs, ReferencedContent(tx));
      return Status::Ok();
    });
    if (!read.ok()) {
      failed("content", read);
    } else {
      for (content::Sweeper* c : content_) {
        auto n = c->Sweep(refs.blobs, refs.ingests);
        if (!n) {
          failed("content", n.error());
          continue;
        }
        stats.backend_removed += *n;
      }
    }
  }
  for (snapshots::Backend* b : snapshots_) {
    std::string what = "snapshotter " + std::string(b->name());
    std::set<int64_t> keep;
    Status read = db_.View([&](Tx& tx) -> Status {
      ASSIGN_OR_RETURN(keep, ReferencedSnapshotIds(tx, b->name()));
      return Status::Ok();
    });
    if (!read.ok()) {
      failed(what, read);
      continue;
    }
    auto n = b->Sweep(keep);
    if (!n) {
      failed(what, n.error());
      continue;
    }
    stats.backend_removed += *n;
  }
}

}  // namespace berth::metadata
