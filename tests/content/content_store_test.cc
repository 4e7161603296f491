// The per-namespace content store: isolation and sharing between namespaces, labels, filters,
// ingest rows and lease attachment, the writer-open rules of compat §4.2 and the GC lock.
#include "metadata/content_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "content/digest.h"
#include "content/local/store.h"
#include "metadata/lease_store.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"
#include "test_util.h"

namespace berth::metadata {
namespace {

using content::DigestOf;
using content::testing::Exists;
using content::testing::TempDir;

class ContentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Db::Open(dir_.path() + "/meta.db");
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    auto local = content::LocalStore::Open(dir_.path() + "/content");
    ASSERT_TRUE(local.has_value()) << local.error().ToString();
    local_ = std::move(*local);
    local_->SetLockAttemptsForTest(1);
    store_ = std::make_unique<ContentStore>(*db_, *local_);
  }

  // Writes and commits `data` as `ref` in `ns`.
  Status Put(const std::string& ns, const std::string& data, const Labels& labels = {},
             const std::string& lease = "", const std::string& ref = "") {
    auto w = store_->OpenWriter(ns, lease, ref.empty() ? "ref-" + DigestOf(data) : ref,
                                static_cast<int64_t>(data.size()), DigestOf(data));
    if (!w) return w.error();
    // As content.Copy does: continue from the offset the writer reports (a shared blob
    // reports all of it).
    ASSIGN_OR_RETURN(content::IngestStatus st, (*w)->Status());
    RETURN_IF_ERROR((*w)->Write(std::string_view(data).substr(static_cast<size_t>(st.offset))));
    return (*w)->Commit(static_cast<int64_t>(data.size()), DigestOf(data), labels);
  }

  void CreateLease(const std::string& ns, const std::string& id) {
    auto lease = LeaseStore(*db_).Create(ns, id, {});
    ASSERT_TRUE(lease.has_value()) << lease.error().ToString();
  }

  // (type, id) pairs of the lease's resources.
  std::vector<std::pair<std::string, std::string>> LeaseResources(const std::string& ns,
                                                                  const std::string& lease) {
    std::vector<std::pair<std::string, std::string>> out;
    auto resources = LeaseStore(*db_).ListResources(ns, lease);
    EXPECT_TRUE(resources.has_value()) << resources.error().ToString();
    if (resources) {
      for (const auto& r : *resources) out.emplace_back(r.type, r.id);
    }
    return out;
  }

  std::optional<ContentStore::IngestRecord> IngestRow(const std::string& ns,
                                                      const std::string& ref) {
    auto row = store_->IngestRowForTest(ns, ref);
    EXPECT_TRUE(row.has_value()) << row.error().ToString();
    return row ? *row : std::nullopt;
  }

  TempDir dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<content::LocalStore> local_;
  std::unique_ptr<ContentStore> store_;
};

TEST_F(ContentStoreTest, CommitMakesContentVisibleInItsNamespaceOnly) {
  ASSERT_TRUE(Put("ns1", "hello", {{"a", "1"}}).ok());
  auto info = store_->Info("ns1", DigestOf("hello"));
  ASSERT_TRUE(info.has_value()) << info.error().ToString();
  EXPECT_EQ(info->size, 5);
  EXPECT_EQ(info->labels, (Labels{{"a", "1"}}));
  EXPECT_GT(info->created_at, 0);
  EXPECT_EQ(info->created_at, info->updated_at);

  EXPECT_EQ(store_->Info("ns2", DigestOf("hello")).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->OpenReader("ns2", DigestOf("hello")).error().code(), Code::kNotFound);
  EXPECT_TRUE(store_->List("ns2")->empty());
  EXPECT_EQ(store_->List("ns1")->size(), 1u);

  auto r = store_->OpenReader("ns1", DigestOf("hello"));
  ASSERT_TRUE(r.has_value());
  char buf[5];
  ASSERT_EQ(*(*r)->ReadAt(buf, 5, 0), 5u);
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_EQ(store_->Info("ns1", "sha256:nope").error().code(), Code::kInvalidArgument);
}

TEST_F(ContentStoreTest, ExpectedAlreadyInNamespaceIsAlreadyExists) {
  ASSERT_TRUE(Put("ns1", "dup").ok());
  auto w = store_->OpenWriter("ns1", "", "again", 3, DigestOf("dup"));
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), Code::kAlreadyExists);
  // Without an expected digest the duplicate is found at commit.
  auto w2 = store_->OpenWriter("ns1", "", "again", 0, "");
  ASSERT_TRUE(w2.has_value());
  ASSERT_TRUE((*w2)->Write("dup").ok());
  EXPECT_EQ((*w2)->Commit(0, "", {}).code(), Code::kAlreadyExists);
  EXPECT_FALSE(store_->Status("ns1", "again").has_value());  // the ingest is gone either way
}

TEST_F(ContentStoreTest, SharedBlobIsLinkedWithoutRewriting) {
  std::string data = content::testing::Bytes(10000);
  std::string dgst = DigestOf(data);
  ASSERT_TRUE(Put("ns1", data).ok());
  auto w = store_->OpenWriter("ns2", "", "fetch", 0, dgst);
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  auto st = (*w)->Status();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->offset, 10000);
  EXPECT_EQ(st->total, 10000);
  EXPECT_EQ(st->ref, "fetch");
  EXPECT_EQ((*w)->Digest(), dgst);
  // A shared writer has no data on disk, so it is not an active ingest.
  EXPECT_TRUE(store_->ListStatuses("ns2")->empty());
  ASSERT_TRUE((*w)->Commit(10000, dgst, {{"k", "v"}}).ok());
  auto info = store_->Info("ns2", dgst);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->labels, (Labels{{"k", "v"}}));
  EXPECT_TRUE(store_->Info("ns1", dgst)->labels.empty());  // labels are per namespace
  EXPECT_FALSE(IngestRow("ns2", "fetch").has_value());
}

TEST_F(ContentStoreTest, SharedWriterChecksCommitArguments) {
  ASSERT_TRUE(Put("ns1", "shared").ok());
  auto w = store_->OpenWriter("ns2", "", "s", 0, DigestOf("shared"));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ((*w)->Commit(7, "", {}).code(), Code::kFailedPrecondition);
  auto w2 = store_->OpenWriter("ns2", "", "s", 0, DigestOf("shared"));
  ASSERT_TRUE(w2.has_value());
  EXPECT_EQ((*w2)->Commit(0, DigestOf("other"), {}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(store_->Info("ns2", DigestOf("shared")).error().code(), Code::kNotFound);
}

TEST_F(ContentStoreTest, SharedWriterTruncatedBecomesRealIngest) {
  ASSERT_TRUE(Put("ns1", "shared").ok());
  auto w = store_->OpenWriter("ns2", "", "s", 0, DigestOf("shared"));
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->Truncate(0).ok());
  EXPECT_EQ((*w)->Status()->offset, 0);
  ASSERT_TRUE((*w)->Write("shared").ok());
  ASSERT_TRUE((*w)->Commit(6, DigestOf("shared"), {}).ok());  // the blob existed: linked
  EXPECT_TRUE(store_->Info("ns2", DigestOf("shared")).has_value());
}

TEST_F(ContentStoreTest, SizeMismatchOnDiskIsNotShared) {
  ASSERT_TRUE(Put("ns1", "shared").ok());
  auto w = store_->OpenWriter("ns2", "", "s", 99, DigestOf("shared"));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ((*w)->Status()->offset, 0);
  EXPECT_EQ((*w)->Status()->total, 99);
}

TEST_F(ContentStoreTest, SameBytesWrittenInAnotherNamespaceAreLinked) {
  ASSERT_TRUE(Put("ns1", "bytes").ok());
  auto w = store_->OpenWriter("ns2", "", "r", 0, "");
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->Write("bytes").ok());
  ASSERT_TRUE((*w)->Commit(5, "", {}).ok());
  EXPECT_EQ((*w)->Digest(), DigestOf("bytes"));
  EXPECT_TRUE(store_->Info("ns2", DigestOf("bytes")).has_value());
}

TEST_F(ContentStoreTest, CommitMismatchCommitsNothing) {
  auto w = store_->OpenWriter("ns1", "", "bad", 0, "");
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->Write("abc").ok());
  Status s = (*w)->Commit(0, DigestOf("abd"), {});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_TRUE(store_->List("ns1")->empty());
  EXPECT_FALSE(Exists(local_->BlobPathForTest(DigestOf("abc"))));
  auto st = store_->Status("ns1", "bad");
  ASSERT_TRUE(st.has_value());  // still resumable
  EXPECT_EQ(st->offset, 3);
  auto w2 = store_->OpenWriter("ns1", "", "bad2", 0, "");
  ASSERT_TRUE((*w2)->Write("abc").ok());
  EXPECT_EQ((*w2)->Commit(4, "", {}).code(), Code::kFailedPrecondition);
}

TEST_F(ContentStoreTest, IngestRowsAndStatus) {
  auto w = store_->OpenWriter("ns1", "", "my/ref", 10, DigestOf("0123456789"));
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->Write("0123").ok());
  auto row = IngestRow("ns1", "my/ref");
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(row->backend_ref.starts_with("ns1/")) << row->backend_ref;
  EXPECT_TRUE(row->backend_ref.ends_with("/my/ref")) << row->backend_ref;
  EXPECT_EQ(row->expected, DigestOf("0123456789"));
  ASSERT_TRUE(row->expires_at.has_value());
  int64_t in_a_day = NowNanos() + kIngestExpiryNanos;
  EXPECT_NEAR(static_cast<double>(*row->expires_at), static_cast<double>(in_a_day), 60e9);

  auto st = store_->Status("ns1", "my/ref");
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_EQ(st->ref, "my/ref");
  EXPECT_EQ(st->offset, 4);
  EXPECT_EQ(st->total, 10);
  EXPECT_EQ(st->expected, DigestOf("0123456789"));
  EXPECT_EQ(store_->Status("ns2", "my/ref").error().code(), Code::kNotFound);

  // Same ref in another namespace: a different ingest, not locked by the first.
  auto other = store_->OpenWriter("ns2", "", "my/ref", 0, "");
  ASSERT_TRUE(other.has_value()) << other.error().ToString();
  EXPECT_EQ((*other)->Status()->offset, 0);
  EXPECT_NE(IngestRow("ns2", "my/ref")->backend_ref, row->backend_ref);

  // Same ref, same namespace: locked.
  auto again = store_->OpenWriter("ns1", "", "my/ref", 10, "");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kUnavailable);
  EXPECT_EQ(store_->Abort("ns1", "", "my/ref").code(), Code::kUnavailable);

  // Resume after close keeps the backend ingest.
  w->reset();
  auto resumed = store_->OpenWriter("ns1", "", "my/ref", 10, "");
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ((*resumed)->Status()->offset, 4);
  EXPECT_EQ(IngestRow("ns1", "my/ref")->backend_ref, row->backend_ref);
  ASSERT_TRUE((*resumed)->Write("456789").ok());
  ASSERT_TRUE((*resumed)->Commit(10, DigestOf("0123456789"), {}).ok());
  EXPECT_FALSE(IngestRow("ns1", "my/ref").has_value());
}

TEST_F(ContentStoreTest, ListStatusesFiltersOnRef) {
  std::vector<std::unique_ptr<content::Writer>> writers;
  for (const char* ref : {"alpha", "beta", "gamma"}) {
    auto w = store_->OpenWriter("ns", "", ref, 0, "");
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->Write("x").ok());
    writers.push_back(std::move(*w));
  }
  auto refs = [&](std::vector<std::string> f) {
    std::vector<std::string> out;
    auto st = store_->ListStatuses("ns", f);
    EXPECT_TRUE(st.has_value());
    for (const auto& s : st.value_or(std::vector<content::IngestStatus>{})) out.push_back(s.ref);
    return out;
  };
  EXPECT_EQ(refs({}), (std::vector<std::string>{"alpha", "beta", "gamma"}));
  EXPECT_EQ(refs({""}), (std::vector<std::string>{"alpha", "beta", "gamma"}));  // ctr's [""]
  EXPECT_EQ(refs({"ref==beta"}), (std::vector<std::string>{"beta"}));
  EXPECT_EQ(refs({"ref~=^(a|g)"}), (std::vector<std::string>{"alpha", "gamma"}));
  EXPECT_TRUE(refs({"nothere"}).empty());
  EXPECT_EQ(store_->ListStatuses("ns", std::vector<std::string>{"ref=="}).error().code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(store_->ListStatuses("other")->empty());
}

// Issue 12 item 4: a 5,000-byte ref used to be accepted, then could not be read back (DataLoss
// in Status, ListStatuses and every GC pass). Refs are bounded at open instead.
TEST_F(ContentStoreTest, OverlongRefIsInvalidArgument) {
  for (size_t n : {content::kMaxRefBytes + 1, size_t{5000}}) {
    auto w = store_->OpenWriter("ns", "", std::string(n, 'r'), 0, "");
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(w.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(w.error().message(), "ref is " + std::to_string(n) +
                                       " bytes long, longer than the 4096 allowed");
  }
  EXPECT_FALSE(IngestRow("ns", std::string(5000, 'r')).has_value());
  // The longest ref, in the longest namespace, is written and read back.
  std::string ns(76, 'n');
  std::string longest(content::kMaxRefBytes, 'r');
  auto w = store_->OpenWriter(ns, "", longest, 0, "");
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  ASSERT_TRUE((*w)->Write("x").ok());
  w->reset();
  auto st = store_->Status(ns, longest);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_EQ(st->offset, 1);
  auto all = store_->ListStatuses(ns);
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].ref, longest);
}

// An ingest whose data cannot be read back (as an older berthd left one) is left out of the
// listing, not fatal to it.
TEST_F(ContentStoreTest, ListStatusesSkipsAnUnreadableIngest) {
  for (const char* ref : {"good", "bad"}) {
    auto w = store_->OpenWriter("ns", "", ref, 0, "");
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->Write("x").ok());
  }
  auto bad = IngestRow("ns", "bad");
  ASSERT_TRUE(bad.has_value());
  content::testing::Spit(local_->IngestPathForTest(bad->backend_ref) + "/ref",
                         std::string(content::kMaxBackendRefBytes + 1, 'b'));
  ASSERT_EQ(store_->Status("ns", "bad").error().code(), Code::kDataLoss);
  auto all = store_->ListStatuses("ns");
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].ref, "good");
}

TEST_F(ContentStoreTest, AbortRemovesIngest) {
  {
    auto w = store_->OpenWriter("ns", "", "doomed", 0, "");
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->Write("data").ok());
  }
  std::string bref = IngestRow("ns", "doomed")->backend_ref;
  ASSERT_TRUE(store_->Abort("ns", "", "doomed").ok());
  EXPECT_FALSE(IngestRow("ns", "doomed").has_value());
  EXPECT_EQ(local_->Status(bref).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Abort("ns", "", "doomed").code(), Code::kNotFound);
  EXPECT_EQ(store_->Status("ns", "doomed").error().code(), Code::kNotFound);
}

TEST_F(ContentStoreTest, UpdateLabelsByMask) {
  ASSERT_TRUE(Put("ns", "labelled", {{"a", "1"}, {"b", "2"}}).ok());
  std::string d = DigestOf("labelled");
  content::Info in;
  in.digest = d;
  in.labels = {{"b", "3"}, {"c", "4"}};
  auto out = store_->Update("ns", in, {"labels.b"});
  ASSERT_TRUE(out.has_value()) << out.error().ToString();
  EXPECT_EQ(out->labels, (Labels{{"a", "1"}, {"b", "3"}}));
  EXPECT_GE(out->updated_at, out->created_at);
  // Absent key in a labels.<key> path deletes it (ctr content label k=).
  out = store_->Update("ns", in, {"labels.a"});
  EXPECT_EQ(out->labels, (Labels{{"b", "3"}}));
  // No mask or "labels": replace all.
  out = store_->Update("ns", in, {});
  EXPECT_EQ(out->labels, (Labels{{"b", "3"}, {"c", "4"}}));
  in.labels = {{"z", "9"}};
  out = store_->Update("ns", in, {"labels"});
  EXPECT_EQ(out->labels, (Labels{{"z", "9"}}));
  EXPECT_EQ(store_->Info("ns", d)->labels, (Labels{{"z", "9"}}));

  EXPECT_EQ(store_->Update("ns", in, {"size"}).error().code(), Code::kInvalidArgument);
  in.labels = {{"big", std::string(5000, 'x')}};
  EXPECT_EQ(store_->Update("ns", in, {"labels.big"}).error().code(), Code::kInvalidArgument);
  in.digest = DigestOf("missing");
  EXPECT_EQ(store_->Update("ns", in, {}).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Update("other", in, {}).error().code(), Code::kNotFound);
}

TEST_F(ContentStoreTest, CommitRejectsOversizedLabels) {
  auto w = store_->OpenWriter("ns", "", "r", 0, "");
  ASSERT_TRUE((*w)->Write("x").ok());
  EXPECT_EQ((*w)->Commit(0, "", {{"k", std::string(5000, 'v')}}).code(), Code::kInvalidArgument);
  EXPECT_TRUE(store_->List("ns")->empty());
}

TEST_F(ContentStoreTest, ListFilters) {
  ASSERT_TRUE(Put("ns", "one", {{"kind", "config"}}).ok());
  ASSERT_TRUE(Put("ns", "two", {{"kind", "layer"}, {"containerd.io/gc.root", "x"}}).ok());
  ASSERT_TRUE(Put("ns", "three").ok());
  auto digests = [&](std::vector<std::string> f) {
    std::set<std::string> out;
    auto l = store_->List("ns", f);
    EXPECT_TRUE(l.has_value());
    for (const auto& i : l.value_or(std::vector<content::Info>{})) out.insert(i.digest);
    return out;
  };
  EXPECT_EQ(digests({}).size(), 3u);
  EXPECT_EQ(digests({"labels.kind==layer"}), (std::set<std::string>{DigestOf("two")}));
  EXPECT_EQ(digests({"labels.kind"}), (std::set<std::string>{DigestOf("one"), DigestOf("two")}));
  EXPECT_EQ(digests({"labels.\"containerd.io/gc.root\""}),
            (std::set<std::string>{DigestOf("two")}));
  EXPECT_EQ(digests({"digest==" + DigestOf("three")}), (std::set<std::string>{DigestOf("three")}));
  EXPECT_EQ(digests({"labels.kind==config", "digest==" + DigestOf("three")}),
            (std::set<std::string>{DigestOf("one"), DigestOf("three")}));
  EXPECT_TRUE(digests({"size==3"}).empty());  // size is not filterable
  EXPECT_EQ(store_->List("ns", std::vector<std::string>{"labels.kind=="}).error().code(),
            Code::kInvalidArgument);
  // Labels travel with List.
  auto all = store_->List("ns");
  for (const auto& i : *all) {
    if (i.digest == DigestOf("two")) {
      EXPECT_EQ(i.labels.size(), 2u);
    }
  }
}

TEST_F(ContentStoreTest, DeleteRemovesFromNamespaceOnly) {
  ASSERT_TRUE(Put("ns1", "kept", {{"a", "b"}}).ok());
  ASSERT_TRUE(Put("ns2", "kept").ok());
  std::string d = DigestOf("kept");
  ASSERT_TRUE(store_->Delete("ns1", "", d).ok());
  EXPECT_EQ(store_->Info("ns1", d).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete("ns1", "", d).code(), Code::kNotFound);
  EXPECT_TRUE(store_->Info("ns2", d).has_value());
  EXPECT_TRUE(Exists(local_->BlobPathForTest(d)));  // disk is GC's business
  // Labels went with the row: re-adding starts clean.
  ASSERT_TRUE(Put("ns1", "kept").ok());
  EXPECT_TRUE(store_->Info("ns1", d)->labels.empty());
  EXPECT_EQ(store_->Delete("ns1", "", "sha256:x").code(), Code::kInvalidArgument);
}

TEST_F(ContentStoreTest, LeaseHeaderAttachesIngestsAndContent) {
  CreateLease("ns", "pull-1");
  auto w = store_->OpenWriter("ns", "pull-1", "layer", 0, "");
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  EXPECT_FALSE(IngestRow("ns", "layer")->expires_at.has_value());  // the lease protects it
  EXPECT_EQ(LeaseResources("ns", "pull-1"),
            (std::vector<std::pair<std::string, std::string>>{{"ingests", "layer"}}));
  ASSERT_TRUE((*w)->Write("leased").ok());
  ASSERT_TRUE((*w)->Commit(0, "", {}).ok());
  EXPECT_EQ(LeaseResources("ns", "pull-1"),
            (std::vector<std::pair<std::string, std::string>>{{"content", DigestOf("leased")}}));

  // Content that already exists is attached even though the writer is refused.
  ASSERT_TRUE(Put("ns", "existing").ok());
  CreateLease("ns", "pull-2");
  auto dup = store_->OpenWriter("ns", "pull-2", "x", 0, DigestOf("existing"));
  EXPECT_EQ(dup.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(LeaseResources("ns", "pull-2"),
            (std::vector<std::pair<std::string, std::string>>{{"content", DigestOf("existing")}}));

  // Delete with the lease header detaches.
  ASSERT_TRUE(store_->Delete("ns", "pull-1", DigestOf("leased")).ok());
  EXPECT_TRUE(LeaseResources("ns", "pull-1").empty());
}

TEST_F(ContentStoreTest, MissingLeaseFailsTheWrite) {
  auto w = store_->OpenWriter("ns", "no-such-lease", "layer", 0, "");
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), Code::kNotFound);
  EXPECT_NE(w.error().message().find("lease does not exist"), std::string::npos);
  EXPECT_FALSE(IngestRow("ns", "layer").has_value());
}

TEST_F(ContentStoreTest, WritesCreateTheNamespace) {
  ASSERT_TRUE(Put("fresh-ns", "x").ok());
  auto namespaces = NamespaceStore(*db_).List();
  ASSERT_TRUE(namespaces.has_value());
  ASSERT_EQ(namespaces->size(), 1u);
  EXPECT_EQ((*namespaces)[0].name, "fresh-ns");
}

// The GC contract: while the collector holds gc_lock exclusively, no blob can be published
// with its row; the commit completes once the lock is released.
TEST_F(ContentStoreTest, CommitWaitsForGarbageCollection) {
  auto w = store_->OpenWriter("ns", "", "gc", 0, "");
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE((*w)->Write("collect me not").ok());
  std::unique_lock gc(db_->gc_lock());
  std::atomic<bool> done{false};
  auto commit = std::async(std::launch::async, [&] {
    Status s = (*w)->Commit(0, "", {});
    done = true;
    return s;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done.load());
  EXPECT_FALSE(Exists(local_->BlobPathForTest(DigestOf("collect me not"))));
  gc.unlock();
  EXPECT_TRUE(commit.get().ok());
  EXPECT_TRUE(store_->Info("ns", DigestOf("collect me not")).has_value());
}

}  // namespace
}  // namespace berth::metadata
