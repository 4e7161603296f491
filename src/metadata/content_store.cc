#include "metadata/content_store.h"

#include <map>
#include <mutex>
#include <shared_mutex>

#include "common/filters.h"
#include "common/log.h"
#include "content/digest.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

constexpr char kIngestSequence[] = "content.ingests";
constexpr char kLeaseContent[] = "content";
constexpr char kLeaseIngests[] = "ingests";

Status ContentNotFound(std::string_view digest) {
  return NotFound("content digest " + std::string(digest));
}

Result<std::optional<content::Info>> ReadInfo(Tx& tx, const std::string& ns,
                                              std::string_view digest) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT size, created_at, updated_at FROM content "
                                       "WHERE namespace=? AND digest=?"));
  st.Bind(1, ns).Bind(2, digest);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<content::Info>();
  content::Info info;
  info.digest = std::string(digest);
  info.size = st.ColumnInt(0);
  info.created_at = st.ColumnInt(1);
  info.updated_at = st.ColumnInt(2);
  ASSIGN_OR_RETURN(info.labels, ReadObjectLabels(tx, ns, kKindContent, digest));
  return std::optional<content::Info>(std::move(info));
}

Status DetachFromLease(Tx& tx, const std::string& ns, std::string_view lease, std::string_view type,
                       std::string_view id) {
  if (lease.empty()) return Status::Ok();
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM lease_resources WHERE namespace=? AND "
                                       "lease=? AND type=? AND id=?"));
  st.Bind(1, ns).Bind(2, lease).Bind(3, type).Bind(4, id);
  return st.Exec();
}

struct IngestRow {
  std::string ref;
  std::string backend_ref;
  std::string expected;
};

Result<std::optional<IngestRow>> ReadIngestRow(Tx& tx, const std::string& ns,
                                               std::string_view ref) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT backend_ref, expected FROM ingests "
                                       "WHERE namespace=? AND ref=?"));
  st.Bind(1, ns).Bind(2, ref);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<IngestRow>();
  return std::optional<IngestRow>(IngestRow{std::string(ref), st.ColumnText(0), st.ColumnText(1)});
}

filters::Adaptor InfoFields(const content::Info& info) {
  return [&info](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.empty()) return std::nullopt;
    if (fp[0] == "digest") return info.digest;
    if (fp[0] == "labels") return filters::LookupMap(info.labels, fp.subspan(1));
    return std::nullopt;
  };
}

}  // namespace

// ---- Writer ------------------------------------------------------------------------------

// The writer a namespace gets: a backend writer (absent while "shared", see the header)
// plus what Commit needs to record the blob in the namespace.
class NamespacedWriter final : public content::Writer {
 public:
  NamespacedWriter(ContentStore* store, std::string ns, std::string lease, std::string ref,
                   std::string backend_ref, std::unique_ptr<content::Writer> w, int64_t shared_size,
                   std::string expected)
      : store_(store),
        ns_(std::move(ns)),
        lease_(std::move(lease)),
        ref_(std::move(ref)),
        backend_ref_(std::move(backend_ref)),
        w_(std::move(w)),
        shared_size_(shared_size),
        expected_(std::move(expected)),
        opened_at_(NowNanos()) {}

  Result<content::IngestStatus> Status() const override {
    content::IngestStatus st;
    if (w_) {
      ASSIGN_OR_RETURN(st, w_->Status());
    } else {
      st.offset = st.total = shared_size_;
      st.started_at = st.updated_at = opened_at_;
    }
    st.ref = ref_;
    st.expected = expected_;
    return st;
  }

  std::string Digest() const override {
    if (!committed_.empty()) return committed_;
    return w_ ? w_->Digest() : expected_;
  }

  berth::Status Write(std::string_view data) override {
    RETURN_IF_ERROR(CheckOpen());
    if (!w_) {
      if (data.empty()) return berth::Status::Ok();
      // Appending to a shared blob: materialise it as an ingest first (containerd does too).
      RETURN_IF_ERROR(Materialise(shared_size_));
    }
    return w_->Write(data);
  }

  berth::Status Truncate(int64_t size) override {
    RETURN_IF_ERROR(CheckOpen());
    if (w_) return w_->Truncate(size);
    if (size != 0) return InvalidArgument("truncate ingest " + ref_ + ": unsupported size");
    return Materialise(0);
  }

  berth::Status Sync() override {
    RETURN_IF_ERROR(CheckOpen());
    return w_ ? w_->Sync() : berth::Status::Ok();
  }

  berth::Status Commit(int64_t size, std::string_view expected, const Labels& labels) override {
    RETURN_IF_ERROR(CheckOpen());
    berth::Status s = DoCommit(size, expected, labels);
    if (!done_) {
      done_ = true;
      if (w_) {
        if (berth::Status c = w_->Close(); !c.ok()) {
          spdlog::warn("content: close writer ns={} ref={}: {}", ns_, ref_, c.ToString());
        }
      }
    }
    return s;
  }

  berth::Status Close() override {
    if (done_) return berth::Status::Ok();
    done_ = true;
    return w_ ? w_->Close() : berth::Status::Ok();
  }

 private:
  berth::Status CheckOpen() const {
    if (done_) return FailedPrecondition("ingest " + ref_ + ": writer is closed");
    return berth::Status::Ok();
  }

  // Turns a shared writer into a real one holding the first `n` bytes of the shared blob.
  berth::Status Materialise(int64_t n) {
    content::Store& backend = store_->backend_;
    ASSIGN_OR_RETURN(auto w, backend.OpenWriter(backend_ref_, 0));
    RETURN_IF_ERROR(w->Truncate(0));
    if (n > 0) {
      ASSIGN_OR_RETURN(auto r, backend.OpenReader(expected_));
      std::string buf(1 << 20, '\0');
      for (int64_t off = 0; off < n;) {
        size_t want = static_cast<size_t>(std::min<int64_t>(n - off, buf.size()));
        ASSIGN_OR_RETURN(size_t got, r->ReadAt(buf.data(), want, off));
        if (got == 0) {
          return berth::Status(Code::kDataLoss, "content " + expected_ + " is truncated");
        }
        RETURN_IF_ERROR(w->Write(std::string_view(buf.data(), got)));
        off += static_cast<int64_t>(got);
      }
    }
    w_ = std::move(w);
    return berth::Status::Ok();
  }

  berth::Status DoCommit(int64_t size, std::string_view expected, const Labels& labels) {
    if (berth::Status s = ValidateLabels(labels); !s.ok()) return s.Wrap("info.Labels");
    if (!expected.empty()) RETURN_IF_ERROR(content::ValidateDigest(expected));
    std::string actual;
    content::Store& backend = store_->backend_;
    Db& db = store_->db_;
    if (!w_) {
      if (size != 0 && size != shared_size_) {
        return FailedPrecondition(Quote(ref_) + " failed size validation: " +
                                  std::to_string(shared_size_) + " != " + std::to_string(size));
      }
      if (!expected.empty() && expected != expected_) {
        return FailedPrecondition(Quote(ref_) + " unexpected digest " + expected_ + ", expected " +
                                  std::string(expected));
      }
      size = shared_size_;
      actual = expected_;
    } else {
      ASSIGN_OR_RETURN(content::IngestStatus st, w_->Status());
      if (size != 0 && size != st.offset) {
        return FailedPrecondition(Quote(ref_) + " failed size validation: " +
                                  std::to_string(st.offset) + " != " + std::to_string(size));
      }
      size = st.offset;
      // Flush outside the GC lock so the collector never waits on a large fsync.
      RETURN_IF_ERROR(w_->Sync());
    }

    std::shared_lock gc(db.gc_lock());
    if (w_) {
      berth::Status c = w_->Commit(size, expected, {});
      // AlreadyExists: identical bytes are on disk already (ours were dropped); link them.
      if (!c.ok() && c.code() != Code::kAlreadyExists) return c;
      actual = w_->Digest();
    } else {
      // The blob must still be there: GC may have run between open and commit.
      auto on_disk = backend.Info(actual);
      if (!on_disk) return on_disk.error().Wrap("commit " + Quote(ref_));
    }
    done_ = true;
    committed_ = actual;

    bool already = false;
    berth::Status s = db.Update([&](Tx& tx) -> berth::Status {
      RETURN_IF_ERROR(EnsureNamespace(tx, ns_));
      ASSIGN_OR_RETURN(Stmt del, tx.Prepare("DELETE FROM ingests WHERE namespace=? AND ref=? "
                                            "AND backend_ref=?"));
      del.Bind(1, ns_).Bind(2, ref_).Bind(3, backend_ref_);
      RETURN_IF_ERROR(del.Exec());
      RETURN_IF_ERROR(DetachFromLease(tx, ns_, lease_, kLeaseIngests, ref_));
      ASSIGN_OR_RETURN(auto existing, ReadInfo(tx, ns_, actual));
      if (existing) {
        already = true;
      } else {
        int64_t now = NowNanos();
        ASSIGN_OR_RETURN(Stmt ins, tx.Prepare("INSERT INTO content(namespace, digest, size, "
                                              "created_at, updated_at) VALUES(?, ?, ?, ?, ?)"));
        ins.Bind(1, ns_).Bind(2, actual).Bind(3, size).Bind(4, now).Bind(5, now);
        RETURN_IF_ERROR(ins.Exec());
        RETURN_IF_ERROR(WriteObjectLabels(tx, ns_, kKindContent, actual, labels));
      }
      return AttachToLease(tx, ns_, lease_, kLeaseContent, actual);
    });
    RETURN_IF_ERROR(s);
    if (already) return AlreadyExists("content " + actual);
    return berth::Status::Ok();
  }

  ContentStore* store_;
  std::string ns_;
  std::string lease_;
  std::string ref_;
  std::string backend_ref_;
  std::unique_ptr<content::Writer> w_;  // null while shared
  int64_t shared_size_;
  std::string expected_;
  int64_t opened_at_;
  bool done_ = false;
  std::string committed_;
};

// ---- Store -------------------------------------------------------------------------------

Result<content::Info> ContentStore::Info(const std::string& ns, std::string_view digest) const {
  RETURN_IF_ERROR(content::ValidateDigest(digest));
  std::optional<content::Info> info;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(info, ReadInfo(tx, ns, digest));
    return berth::Status::Ok();
  }));
  if (!info) return std::unexpected(ContentNotFound(digest));
  return std::move(*info);
}

Result<content::Info> ContentStore::Update(const std::string& ns, const content::Info& info,
                                           const std::vector<std::string>& fieldpaths) {
  RETURN_IF_ERROR(content::ValidateDigest(info.digest));
  LabelMask mask = ParseLabelMask(fieldpaths);
  if (!mask.other_paths.empty()) {
    return std::unexpected(InvalidArgument("cannot update " + Quote(mask.other_paths[0]) +
                                           " field on content info " + Quote(info.digest)));
  }
  content::Info out;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(auto current, ReadInfo(tx, ns, info.digest));
    if (!current) return ContentNotFound(info.digest);
    auto labels = ApplyLabelMask(current->labels, info.labels, mask);
    if (!labels) return labels.error().Wrap("info.Labels");
    RETURN_IF_ERROR(WriteObjectLabels(tx, ns, kKindContent, info.digest, *labels));
    out = std::move(*current);
    out.labels = std::move(*labels);
    out.updated_at = NowNanos();
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("UPDATE content SET updated_at=? WHERE namespace=? "
                                         "AND digest=?"));
    st.Bind(1, out.updated_at).Bind(2, ns).Bind(3, info.digest);
    return st.Exec();
  }));
  return out;
}

Result<std::vector<content::Info>> ContentStore::List(
    const std::string& ns, std::span<const std::string> filter_exprs) const {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(filter_exprs));
  std::vector<content::Info> out;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT digest, size, created_at, updated_at FROM "
                                         "content WHERE namespace=? ORDER BY digest"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      content::Info info;
      info.digest = st.ColumnText(0);
      info.size = st.ColumnInt(1);
      info.created_at = st.ColumnInt(2);
      info.updated_at = st.ColumnInt(3);
      out.push_back(std::move(info));
    }
    ASSIGN_OR_RETURN(Stmt lb, tx.Prepare("SELECT object, key, value FROM labels WHERE "
                                         "namespace=? AND kind=?"));
    lb.Bind(1, ns).Bind(2, kKindContent);
    std::map<std::string, Labels> labels;
    for (;;) {
      ASSIGN_OR_RETURN(bool row, lb.Step());
      if (!row) break;
      labels[lb.ColumnText(0)].emplace(lb.ColumnText(1), lb.ColumnText(2));
    }
    for (auto& info : out) {
      if (auto it = labels.find(info.digest); it != labels.end()) info.labels = it->second;
    }
    return berth::Status::Ok();
  }));
  if (!filter.MatchesAll()) {
    std::erase_if(out, [&](const content::Info& info) { return !filter.Match(InfoFields(info)); });
  }
  return out;
}

berth::Status ContentStore::Delete(const std::string& ns, std::string_view lease,
                                   std::string_view digest) {
  RETURN_IF_ERROR(content::ValidateDigest(digest));
  return db_.Update([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM content WHERE namespace=? AND digest=?"));
    st.Bind(1, ns).Bind(2, digest);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return ContentNotFound(digest);
    RETURN_IF_ERROR(DeleteObjectLabels(tx, ns, kKindContent, digest));
    return DetachFromLease(tx, ns, lease, kLeaseContent, digest);
  });
}

Result<std::unique_ptr<content::ReaderAt>> ContentStore::OpenReader(const std::string& ns,
                                                                    std::string_view digest) const {
  ASSIGN_OR_RETURN(content::Info info, Info(ns, digest));
  return backend_.OpenReader(info.digest);
}

Result<content::IngestStatus> ContentStore::Status(const std::string& ns,
                                                   std::string_view ref) const {
  std::optional<IngestRow> row;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(row, ReadIngestRow(tx, ns, ref));
    return berth::Status::Ok();
  }));
  if (!row) return std::unexpected(NotFound("reference " + std::string(ref)));
  ASSIGN_OR_RETURN(content::IngestStatus st, backend_.Status(row->backend_ref));
  st.ref = row->ref;
  st.expected = row->expected;
  return st;
}

Result<std::vector<content::IngestStatus>> ContentStore::ListStatuses(
    const std::string& ns, std::span<const std::string> filter_exprs) const {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(filter_exprs));
  std::vector<IngestRow> rows;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT ref, backend_ref, expected FROM ingests "
                                         "WHERE namespace=? ORDER BY ref"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      rows.push_back({st.ColumnText(0), st.ColumnText(1), st.ColumnText(2)});
    }
    return berth::Status::Ok();
  }));
  std::vector<content::IngestStatus> out;
  for (const auto& row : rows) {
    auto st = backend_.Status(row.backend_ref);
    if (!st) {
      if (st.error().code() == Code::kNotFound) continue;
      if (st.error().code() == Code::kDataLoss) {
        // One unreadable ingest must not hide every other one from the listing.
        spdlog::warn("content: skipping unreadable ingest ns={} ref={}: {}", ns, row.ref,
                     st.error().ToString());
        continue;
      }
      return std::unexpected(st.error());
    }
    st->ref = row.ref;
    st->expected = row.expected;
    auto fields = [&](std::span<const std::string> fp) -> std::optional<std::string> {
      if (fp.size() == 1 && fp[0] == "ref") return st->ref;
      return std::nullopt;
    };
    if (filter.Match(fields)) out.push_back(std::move(*st));
  }
  return out;
}

berth::Status ContentStore::Abort(const std::string& ns, std::string_view lease,
                                  std::string_view ref) {
  std::optional<IngestRow> row;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(row, ReadIngestRow(tx, ns, ref));
    return berth::Status::Ok();
  }));
  if (!row) return NotFound("reference " + std::string(ref));
  // Data first: a row without data is harmless (Status says NotFound, GC drops it), while
  // removing the row first would let a writer that still holds the ref go on writing.
  if (berth::Status s = backend_.Abort(row->backend_ref); !s.ok() && s.code() != Code::kNotFound) {
    return s;
  }
  return db_.Update([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM ingests WHERE namespace=? AND ref=? AND "
                                         "backend_ref=?"));
    st.Bind(1, ns).Bind(2, ref).Bind(3, row->backend_ref);
    RETURN_IF_ERROR(st.Exec());
    return DetachFromLease(tx, ns, lease, kLeaseIngests, ref);
  });
}

Result<std::optional<ContentStore::IngestRecord>> ContentStore::IngestRowForTest(
    const std::string& ns, std::string_view ref) const {
  std::optional<IngestRecord> out;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> berth::Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT backend_ref, expected, expires_at FROM ingests "
                                         "WHERE namespace=? AND ref=?"));
    st.Bind(1, ns).Bind(2, ref);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return berth::Status::Ok();
    out = IngestRecord{st.ColumnText(0), st.ColumnText(1), std::nullopt};
    if (!st.ColumnIsNull(2)) out->expires_at = st.ColumnInt(2);
    return berth::Status::Ok();
  }));
  return out;
}

Result<std::unique_ptr<content::Writer>> ContentStore::OpenWriter(const std::string& ns,
                                                                  std::string_view lease,
                                                                  std::string_view ref,
                                                                  int64_t total,
                                                                  std::string_view expected) {
  if (ref.empty()) return std::unexpected(InvalidArgument("ref must not be empty"));
  if (ref.size() > content::kMaxRefBytes) {
    return std::unexpected(InvalidArgument("ref is " + std::to_string(ref.size()) +
                                           " bytes long, longer than the " +
                                           std::to_string(content::kMaxRefBytes) + " allowed"));
  }
  if (!expected.empty()) RETURN_IF_ERROR(content::ValidateDigest(expected));
  bool exists = false;
  bool shared = false;
  int64_t shared_size = 0;
  std::string backend_ref;
  // Row and backend ingest appear together as far as GC can tell: its sweep of unreferenced
  // backend ingests can never fall between the two.
  std::shared_lock gc(db_.gc_lock());
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> berth::Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, ns));
    if (!expected.empty()) {
      ASSIGN_OR_RETURN(auto info, ReadInfo(tx, ns, expected));
      if (info) {
        // Committed, so that the lease still protects content the client skips writing.
        exists = true;
        return AttachToLease(tx, ns, lease, kLeaseContent, expected);
      }
      if (auto blob = backend_.Info(expected); blob && (total <= 0 || total == blob->size)) {
        shared = true;
        shared_size = blob->size;
      }
    }
    ASSIGN_OR_RETURN(auto row, ReadIngestRow(tx, ns, ref));
    std::optional<int64_t> expires;
    if (lease.empty()) expires = NowNanos() + kIngestExpiryNanos;
    if (row) {
      backend_ref = row->backend_ref;
      ASSIGN_OR_RETURN(Stmt up, tx.Prepare("UPDATE ingests SET expected=?, expires_at=? "
                                           "WHERE namespace=? AND ref=?"));
      up.Bind(1, expected.empty() ? std::string_view(row->expected) : expected);
      if (expires) {
        up.Bind(2, *expires);
      } else {
        up.BindNull(2);
      }
      up.Bind(3, ns).Bind(4, ref);
      RETURN_IF_ERROR(up.Exec());
    } else {
      ASSIGN_OR_RETURN(int64_t seq, NextSequence(tx, kIngestSequence));
      backend_ref = ns + "/" + std::to_string(seq) + "/" + std::string(ref);
      ASSIGN_OR_RETURN(Stmt ins, tx.Prepare("INSERT INTO ingests(namespace, ref, backend_ref, "
                                            "expected, expires_at) VALUES(?, ?, ?, ?, ?)"));
      ins.Bind(1, ns).Bind(2, ref).Bind(3, backend_ref).Bind(4, expected);
      if (expires) {
        ins.Bind(5, *expires);
      } else {
        ins.BindNull(5);
      }
      RETURN_IF_ERROR(ins.Exec());
    }
    return AttachToLease(tx, ns, lease, kLeaseIngests, ref);
  }));
  if (exists) return std::unexpected(AlreadyExists("content " + std::string(expected)));

  std::unique_ptr<content::Writer> w;
  if (!shared) {
    // Outside the transaction (resuming re-hashes the stored bytes, which can take a while);
    // only GC waits for it.
    ASSIGN_OR_RETURN(w, backend_.OpenWriter(backend_ref, total));
  }
  return std::make_unique<NamespacedWriter>(this, ns, std::string(lease), std::string(ref),
                                            backend_ref, std::move(w), shared_size,
                                            std::string(expected));
}

}  // namespace berth::metadata
