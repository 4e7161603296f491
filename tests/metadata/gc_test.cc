// Mark and sweep (metadata/gc.h) driven through the stores' public APIs: what images,
// containers, leases, ingests and gc labels keep; what goes from the metadata and from the
// backends (a real LocalStore for content, a fake snapshot backend that records its ids).
#include "metadata/gc.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "content/digest.h"
#include "content/local/store.h"
#include "metadata/container_store.h"
#include "metadata/content_store.h"
#include "metadata/image_store.h"
#include "metadata/lease_store.h"
#include "metadata/object_labels.h"
#include "metadata/snapshot_store.h"
#include "temp_db.h"

namespace berth::metadata {
namespace {

using content::DigestOf;

constexpr int64_t kHour = int64_t{3600} * 1000000000;

// Snapshot data as a set of ids; Sweep removes the ids not kept, as the real backends do.
class FakeSnapshotBackend final : public snapshots::Backend {
 public:
  std::string_view name() const override { return "overlayfs"; }
  Status Create(int64_t id, snapshots::Kind, std::span<const int64_t>) override {
    ids.insert(id);
    return Status::Ok();
  }
  Result<std::vector<snapshots::Mount>> Mounts(int64_t, snapshots::Kind,
                                               std::span<const int64_t>) const override {
    return std::vector<snapshots::Mount>{};
  }
  Result<snapshots::Usage> Measure(int64_t) const override { return snapshots::Usage{}; }
  Status Remove(int64_t id) override {
    ids.erase(id);
    return Status::Ok();
  }
  Result<std::vector<int64_t>> List() const override {
    return std::vector<int64_t>(ids.rbegin(), ids.rend());
  }
  Result<int64_t> Sweep(const std::set<int64_t>& keep) override {
    ++sweeps;
    if (fail_sweep) return std::unexpected(Internal("sweep failed for the test"));
    int64_t removed = std::erase_if(ids, [&](int64_t id) { return !keep.contains(id); });
    return removed;
  }
  Result<int64_t> PendingRemovals() const override { return 0; }

  std::set<int64_t> ids;
  int sweeps = 0;
  bool fail_sweep = false;
};

class GcTest : public TempDbTest {
 protected:
  void SetUp() override {
    TempDbTest::SetUp();
    auto local = content::LocalStore::Open(dir_ + "/content");
    ASSERT_TRUE(local) << local.error().ToString();
    local_ = std::move(*local);
    content_ = std::make_unique<ContentStore>(*db_, *local_);
    images_ = std::make_unique<ImageStore>(*db_);
    leases_ = std::make_unique<LeaseStore>(*db_);
    containers_ = std::make_unique<ContainerStore>(*db_);
    snapshots_ = std::make_unique<SnapshotStore>(*db_, backend_);
    gc_ = std::make_unique<GarbageCollector>(*db_);
    gc_->AddContentBackend(*local_);
    gc_->AddSnapshotBackend(backend_);
  }
  void TearDown() override {
    gc_.reset();
    snapshots_.reset();
    content_.reset();
    local_.reset();
    TempDbTest::TearDown();
  }

  // Commits the bytes `name` as a blob of `ns` (digest D(name)) with `labels`.
  void AddContent(const std::string& ns, const std::string& name, const Labels& labels = {}) {
    auto w = content_->OpenWriter(ns, "", "ref-" + name, 0, "");
    ASSERT_TRUE(w) << w.error().ToString();
    ASSERT_TRUE((*w)->Write(name).ok());
    Status s = (*w)->Commit(0, D(name), labels);
    ASSERT_TRUE(s.ok() || s.code() == Code::kAlreadyExists) << s.ToString();
  }
  static std::string D(const std::string& name) { return DigestOf(name); }

  std::set<std::string> Content(const std::string& ns) {
    std::set<std::string> out;
    auto list = content_->List(ns);
    EXPECT_TRUE(list) << list.error().ToString();
    if (list) {
      for (const auto& info : *list) out.insert(info.digest);
    }
    return out;
  }
  std::set<std::string> Disk() {
    std::set<std::string> out;
    EXPECT_TRUE(local_->Walk([&](const content::BlobInfo& b) {
                        out.insert(b.digest);
                        return Status::Ok();
                      }).ok());
    return out;
  }
  std::set<std::string> Names(std::initializer_list<const char*> names) {
    std::set<std::string> out;
    for (const char* n : names) out.insert(D(n));
    return out;
  }

  void AddImage(const std::string& ns, const std::string& name, const std::string& target,
                const Labels& labels = {}) {
    Image img;
    img.name = name;
    img.labels = labels;
    img.target = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                  .digest = D(target),
                  .size = static_cast<int64_t>(target.size())};
    auto r = images_->Create(ns, img);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  // A committed snapshot `key` on `parent`, through Prepare + Commit.
  void AddSnapshot(const std::string& ns, const std::string& key, const std::string& parent,
                   const Labels& labels = {}) {
    snapshots::Ctx ctx{ns, ""};
    auto m = snapshots_->Prepare(ctx, "prepare-" + key, parent, {});
    ASSERT_TRUE(m) << m.error().ToString();
    Status s = snapshots_->Commit(ctx, key, "prepare-" + key, labels);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::set<std::string> SnapshotKeys(const std::string& ns) {
    std::set<std::string> out;
    EXPECT_TRUE(snapshots_
                    ->Walk({ns, ""},
                           [&](const snapshots::Info& info) {
                             out.insert(info.name);
                             return Status::Ok();
                           })
                    .ok());
    return out;
  }

  void AddContainer(const std::string& ns, const std::string& id, const std::string& snapshot,
                    const Labels& labels = {}) {
    Container c;
    c.id = id;
    c.labels = labels;
    c.runtime_name = "io.containerd.runc.v2";
    c.spec = AnyValue{"types.containerd.io/opencontainers/runtime-spec/1/Spec", "{}"};
    if (!snapshot.empty()) {
      c.snapshotter = "overlayfs";
      c.snapshot_key = snapshot;
    }
    auto r = containers_->Create(ns, c);
    ASSERT_TRUE(r) << r.error().ToString();
  }

  Result<GcStats> Collect() { return gc_->Collect(); }

  std::unique_ptr<content::LocalStore> local_;
  std::unique_ptr<ContentStore> content_;
  std::unique_ptr<ImageStore> images_;
  std::unique_ptr<LeaseStore> leases_;
  std::unique_ptr<ContainerStore> containers_;
  FakeSnapshotBackend backend_;
  std::unique_ptr<SnapshotStore> snapshots_;
  std::unique_ptr<GarbageCollector> gc_;
};

TEST_F(GcTest, UnreferencedContentIsRemovedFromMetadataAndDisk) {
  AddContent("ns", "a");
  ASSERT_EQ(Disk(), Names({"a"}));
  auto stats = Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->content_removed, 1);
  EXPECT_EQ(stats->backend_removed, 1);
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(Disk().empty());
}

TEST_F(GcTest, ImageKeepsItsTreeThroughRefLabels) {
  // index → manifest → config + layer, as ctr pull labels them.
  AddContent("ns", "index", {{"containerd.io/gc.ref.content.m.0", D("manifest")}});
  AddContent("ns", "manifest", {{"containerd.io/gc.ref.content.config", D("config")},
                                {"containerd.io/gc.ref.content.l.0", D("layer")}});
  AddContent("ns", "config");
  AddContent("ns", "layer");
  AddContent("ns", "orphan");
  AddImage("ns", "img", "index");
  ASSERT_TRUE(Collect());
  EXPECT_EQ(Content("ns"), Names({"index", "manifest", "config", "layer"}));
  EXPECT_EQ(Disk(), Names({"index", "manifest", "config", "layer"}));
  // Delete the image: everything goes.
  ASSERT_TRUE(images_->Delete("ns", "img").ok());
  ASSERT_TRUE(Collect());
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(Disk().empty());
}

TEST_F(GcTest, ImageLabelsAreEdgesToo) {
  AddContent("ns", "target");
  AddContent("ns", "extra");
  AddImage("ns", "img", "target", {{"containerd.io/gc.ref.content.x", D("extra")}});
  ASSERT_TRUE(Collect());
  EXPECT_EQ(Content("ns"), Names({"target", "extra"}));
}

TEST_F(GcTest, RefLabelNamingRules) {
  AddContent("ns", "root", {{"containerd.io/gc.root", "1"},
                            {"containerd.io/gc.ref.content", D("bare")},
                            {"containerd.io/gc.ref.content/x", D("slash")},
                            {"containerd.io/gc.ref.contentx", D("notref")}});
  AddContent("ns", "bare");
  AddContent("ns", "slash");
  AddContent("ns", "notref");
  ASSERT_TRUE(Collect());
  EXPECT_EQ(Content("ns"), Names({"root", "bare", "slash"}));
}

TEST_F(GcTest, BlobSharedAcrossNamespacesStaysWhileAnyHoldsIt) {
  AddContent("ns", "shared", {{"containerd.io/gc.root", "x"}});
  AddContent("other", "shared");
  ASSERT_TRUE(Collect());
  EXPECT_TRUE(Content("other").empty());
  EXPECT_EQ(Content("ns"), Names({"shared"}));
  EXPECT_EQ(Disk(), Names({"shared"}));  // still referenced by "ns"
}

TEST_F(GcTest, LeasesProtectUntilExpiry) {
  AddContent("ns", "leased", {{"containerd.io/gc.ref.content", D("child")}});
  AddContent("ns", "child");
  AddContent("ns", "expired");
  ASSERT_TRUE(leases_->Create("ns", "live", {{kGcExpireLabel, "2999-01-01T00:00:00Z"}}));
  ASSERT_TRUE(leases_->Create("ns", "old", {{kGcExpireLabel, "2001-01-01T00:00:00Z"}}));
  ASSERT_TRUE(leases_->AddResource("ns", "live", {.id = D("leased"), .type = "content"}).ok());
  ASSERT_TRUE(leases_->AddResource("ns", "old", {.id = D("expired"), .type = "content"}).ok());
  auto stats = Collect();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->leases_removed, 1);
  EXPECT_EQ(Content("ns"), Names({"leased", "child"}));
  auto left = leases_->List("ns");
  ASSERT_TRUE(left);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].id, "live");
}

TEST_F(GcTest, FlatLeaseKeepsContentButNotItsReferences) {
  AddContent("ns", "top", {{"containerd.io/gc.ref.content", D("below")}});
  AddContent("ns", "below");
  ASSERT_TRUE(leases_->Create("ns", "flat", {{kGcFlatLabel, "1"}}));
  ASSERT_TRUE(leases_->AddResource("ns", "flat", {.id = D("top"), .type = "content"}).ok());
  ASSERT_TRUE(Collect());
  EXPECT_EQ(Content("ns"), Names({"top"}));
}

TEST_F(GcTest, IngestsLiveUntilExpiryAndProtectExpectedContent) {
  int64_t now = NowNanos();
  // "live" expects the blob another writer then commits; "plain" expects nothing.
  ASSERT_TRUE(content_->OpenWriter("ns", "", "live", 0, D("expected")));
  AddContent("ns", "expected");
  ASSERT_TRUE(content_->OpenWriter("ns", "", "plain", 0, ""));
  ASSERT_TRUE(leases_->Create("ns", "pull", {}));
  ASSERT_TRUE(content_->OpenWriter("ns", "pull", "leased", 0, ""));
  auto on_disk = [&] {
    int n = 0;
    EXPECT_TRUE(local_->WalkIngests([&](const content::IngestStatus&) {
                        ++n;
                        return Status::Ok();
                      }).ok());
    return n;
  };
  ASSERT_EQ(on_disk(), 3);
  // Within the 24 h expiry, every ingest and what it expects stay.
  auto stats = gc_->CollectAtForTest(now + kHour);
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->ingests_removed, 0);
  EXPECT_EQ(Content("ns"), Names({"expected"}));
  EXPECT_EQ(on_disk(), 3);
  // Past it, lease-less ingests go, rows and data; the leased one stays with its lease.
  stats = gc_->CollectAtForTest(now + 25 * kHour);
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->ingests_removed, 2);
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_EQ(content_->Status("ns", "plain").error().code(), Code::kNotFound);
  EXPECT_EQ(on_disk(), 1);
  auto statuses = content_->ListStatuses("ns");
  ASSERT_TRUE(statuses);
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].ref, "leased");
}

// An ingest whose data cannot be read back (a `ref` file beyond the read cap, as an old
// berthd wrote for a 5,000-byte ref) is skipped and logged; the rest of the pass, snapshots
// included, still runs.
TEST_F(GcTest, OneUnreadableIngestDoesNotStopThePass) {
  std::string long_ref(content::kMaxBackendRefBytes + 1000, 'x');
  {
    // Only the backend can still be given such a ref: write its files by hand, as the old
    // code did, then check the store cannot read it back.
    std::string dir = local_->IngestPathForTest(long_ref);
    std::filesystem::create_directories(dir);
    for (const auto& [name, data] : {std::pair<std::string, std::string>{"ref", long_ref},
                                     {"data", "abc"},
                                     {"startedat", "2026-01-01T00:00:00Z"},
                                     {"updatedat", "2026-01-01T00:00:00Z"}}) {
      FILE* f = std::fopen((dir + "/" + name).c_str(), "w");
      ASSERT_NE(f, nullptr);
      std::fwrite(data.data(), 1, data.size(), f);
      std::fclose(f);
    }
    ASSERT_EQ(local_->Status(long_ref).error().code(), Code::kDataLoss);
  }
  AddContent("ns", "orphan");
  ASSERT_TRUE(content_->OpenWriter("ns", "", "stale", 0, ""));
  AddSnapshot("ns", "removed", "");
  ASSERT_EQ(backend_.ids.size(), 1u);
  auto stats = gc_->CollectAtForTest(NowNanos() + 25 * kHour);
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->backend_errors, 0);
  EXPECT_TRUE(Disk().empty());
  EXPECT_EQ(content_->Status("ns", "stale").error().code(), Code::kNotFound);
  EXPECT_TRUE(SnapshotKeys("ns").empty());
  EXPECT_TRUE(backend_.ids.empty());  // the snapshot sweep ran after the content sweep
  EXPECT_TRUE(std::filesystem::exists(local_->IngestPathForTest(long_ref)));
}

TEST_F(GcTest, OneFailingBackendDoesNotStopTheOthers) {
  FakeSnapshotBackend native_like;  // a second snapshotter after the failing one
  backend_.fail_sweep = true;
  gc_->AddSnapshotBackend(native_like);
  AddContent("ns", "orphan");
  auto stats = Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->backend_errors, 1);
  EXPECT_EQ(backend_.sweeps, 1);
  EXPECT_EQ(native_like.sweeps, 1);
  EXPECT_TRUE(Disk().empty());
}

TEST_F(GcTest, UnreferencedSnapshotsGoWithTheirData) {
  AddSnapshot("ns", "l1", "");
  AddSnapshot("ns", "l2", "l1");
  auto stats = Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->snapshots_removed, 2);
  EXPECT_TRUE(SnapshotKeys("ns").empty());
  EXPECT_TRUE(backend_.ids.empty());
}

TEST_F(GcTest, ImageConfigLabelKeepsChainAndParents) {
  // image → manifest → config --gc.ref.snapshot.overlayfs--> top → mid → base
  AddContent("ns", "manifest", {{"containerd.io/gc.ref.content.config", D("config")}});
  AddContent("ns", "config", {{"containerd.io/gc.ref.snapshot.overlayfs", "top"}});
  AddImage("ns", "img", "manifest");
  AddSnapshot("ns", "base", "");
  AddSnapshot("ns", "mid", "base");
  AddSnapshot("ns", "top", "mid");
  AddSnapshot("ns", "stray", "base");
  ASSERT_TRUE(Collect());
  EXPECT_EQ(SnapshotKeys("ns"), (std::set<std::string>{"base", "mid", "top"}));
  EXPECT_EQ(backend_.ids, (std::set<int64_t>{1, 2, 3}));
  ASSERT_TRUE(images_->Delete("ns", "img").ok());
  ASSERT_TRUE(Collect());
  EXPECT_TRUE(SnapshotKeys("ns").empty());
  EXPECT_TRUE(backend_.ids.empty());
}

TEST_F(GcTest, LeaseRootLabelAndSnapshotRefs) {
  AddSnapshot("ns", "leased", "");
  AddSnapshot("ns", "rooted", "", {{"containerd.io/gc.root", "1"},
                                   {"containerd.io/gc.ref.snapshot.overlayfs/x", "refd"},
                                   {"containerd.io/gc.ref.content", D("c")}});
  AddSnapshot("ns", "refd", "");
  AddSnapshot("other", "leased", "");  // same key, other namespace: not held
  AddContent("ns", "c");
  ASSERT_TRUE(leases_->Create("ns", "l", {}));
  ASSERT_TRUE(
      leases_->AddResource("ns", "l", {.id = "leased", .type = "snapshots/overlayfs"}).ok());
  ASSERT_TRUE(Collect());
  EXPECT_EQ(SnapshotKeys("ns"), (std::set<std::string>{"leased", "rooted", "refd"}));
  EXPECT_TRUE(SnapshotKeys("other").empty());
  EXPECT_EQ(Content("ns"), Names({"c"}));
}

TEST_F(GcTest, ContainersHoldTheirSnapshotAndWhatTheirLabelsName) {
  // c1's rootfs is "c1" on "base"; c2 names content and another snapshot by gc.ref labels;
  // c3 has no snapshot at all.
  AddSnapshot("ns", "base", "");
  AddSnapshot("ns", "c1", "base");
  AddSnapshot("ns", "extra", "");
  AddSnapshot("ns", "stray", "");
  AddSnapshot("other", "c1", "");  // same key in another namespace: not held by ns's c1
  AddContent("ns", "checkpoint", {{"containerd.io/gc.ref.content.l", D("layer")}});
  AddContent("ns", "layer");
  AddContent("ns", "orphan");
  AddContainer("ns", "c1", "c1");
  AddContainer("ns", "c2", "",
               {{"containerd.io/gc.ref.content.checkpoint", D("checkpoint")},
                {"containerd.io/gc.ref.snapshot.overlayfs/x", "extra"}});
  AddContainer("ns", "c3", "");
  ASSERT_TRUE(Collect());
  EXPECT_EQ(SnapshotKeys("ns"), (std::set<std::string>{"base", "c1", "extra"}));
  EXPECT_TRUE(SnapshotKeys("other").empty());
  EXPECT_EQ(Content("ns"), Names({"checkpoint", "layer"}));
  EXPECT_EQ(containers_->List("ns")->size(), 3u);  // roots, never collected themselves
  ASSERT_TRUE(containers_->Delete("ns", "c1").ok());
  ASSERT_TRUE(Collect());
  EXPECT_EQ(SnapshotKeys("ns"), (std::set<std::string>{"extra"}));
  ASSERT_TRUE(containers_->Delete("ns", "c2").ok());
  ASSERT_TRUE(containers_->Delete("ns", "c3").ok());
  ASSERT_TRUE(Collect());
  EXPECT_TRUE(SnapshotKeys("ns").empty());
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(backend_.ids.empty());
}

TEST_F(GcTest, UnreachableContentDoesNotHoldSnapshots) {
  AddContent("ns", "config", {{"containerd.io/gc.ref.snapshot.overlayfs", "s"}});
  AddSnapshot("ns", "s", "");
  ASSERT_TRUE(Collect());
  EXPECT_TRUE(SnapshotKeys("ns").empty());
  EXPECT_TRUE(Content("ns").empty());
}

TEST(Rfc3339Test, Parses) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:01.5Z"), 1500000000);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(*ParseRfc3339("2026-11-28T00:00:00Z"), int64_t{1795824000} * 1000000000);
  for (const char* bad :
       {"", "yesterday", "2026-11-28", "2026-11-28T00:00:00", "2026-11-28T00:00:00Zjunk"}) {
    EXPECT_FALSE(ParseRfc3339(bad)) << bad;
  }
}

}  // namespace
}  // namespace berth::metadata
