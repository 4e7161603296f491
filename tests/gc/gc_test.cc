#include "gc/gc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "metadata/namespaces.h"
#include "metadata/object_labels.h"
#include "../common/wait.h"

namespace berth::gc {
namespace {

using metadata::Tx;

class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-gc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto db = metadata::Db::Open(dir_ + "/meta.db");
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    gc_ = std::make_unique<Collector>(*db_);
    // A fake blob backend: what is "on disk" is the set `disk_`.
    gc_->AddBackend({.name = "blobs",
                     .list = [this]() -> Result<std::vector<std::string>> {
                       return std::vector<std::string>(disk_.begin(), disk_.end());
                     },
                     .remove = [this](const std::string& id) -> Status {
                       disk_.erase(id);
                       return Status::Ok();
                     },
                     .referenced_sql = "SELECT DISTINCT digest FROM content"});
  }
  void TearDown() override {
    gc_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Exec(const std::string& sql) {
    Status s = db_->Update([&](Tx& tx) -> Status {
      RETURN_IF_ERROR(metadata::EnsureNamespace(tx, "ns"));
      RETURN_IF_ERROR(metadata::EnsureNamespace(tx, "other"));
      return tx.Exec(sql);
    });
    ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << sql;
  }
  void AddContent(const std::string& ns, const std::string& digest,
                  const Labels& labels = {}) {
    Exec("INSERT INTO content VALUES('" + ns + "', '" + digest + "', 1, 1, 1)");
    ASSERT_TRUE(db_->Update([&](Tx& tx) {
                     return metadata::WriteObjectLabels(tx, ns, metadata::kKindContent, digest,
                                                        labels);
                   }).ok());
    disk_.insert(digest);
  }
  std::set<std::string> Content(const std::string& ns) {
    std::set<std::string> out;
    EXPECT_TRUE(db_->View([&](Tx& tx) -> Status {
                     ASSIGN_OR_RETURN(auto st,
                                      tx.Prepare("SELECT digest FROM content WHERE namespace=?"));
                     st.Bind(1, ns);
                     for (;;) {
                       ASSIGN_OR_RETURN(bool row, st.Step());
                       if (!row) break;
                       out.insert(st.ColumnText(0));
                     }
                     return Status::Ok();
                   }).ok());
    return out;
  }

  std::string dir_;
  std::unique_ptr<metadata::Db> db_;
  std::unique_ptr<Collector> gc_;
  std::set<std::string> disk_;
};

TEST_F(GcTest, UnreferencedContentIsRemovedFromMetadataAndDisk) {
  AddContent("ns", "sha256:a");
  auto stats = gc_->Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->content_removed, 1);
  EXPECT_EQ(stats->backend_removed, 1);
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(disk_.empty());
}

TEST_F(GcTest, ImageKeepsItsTreeThroughRefLabels) {
  // index → manifest → config + layer, as ctr pull labels them.
  AddContent("ns", "sha256:index", {{"containerd.io/gc.ref.content.m.0", "sha256:manifest"}});
  AddContent("ns", "sha256:manifest", {{"containerd.io/gc.ref.content.config", "sha256:config"},
                                       {"containerd.io/gc.ref.content.l.0", "sha256:layer"}});
  AddContent("ns", "sha256:config");
  AddContent("ns", "sha256:layer");
  AddContent("ns", "sha256:orphan");
  Exec("INSERT INTO images VALUES('ns', 'img', 'application/vnd.oci.image.index.v1+json', "
       "'sha256:index', 1, '{}', 1, 1)");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:index", "sha256:manifest",
                                                  "sha256:config", "sha256:layer"}));
  EXPECT_FALSE(disk_.contains("sha256:orphan"));
  // Delete the image: everything goes.
  Exec("DELETE FROM images");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(disk_.empty());
}

TEST_F(GcTest, RefLabelNamingRules) {
  AddContent("ns", "sha256:root", {{"containerd.io/gc.root", "1"},
                                   {"containerd.io/gc.ref.content", "sha256:bare"},
                                   {"containerd.io/gc.ref.content/x", "sha256:slash"},
                                   {"containerd.io/gc.ref.contentx", "sha256:notref"}});
  AddContent("ns", "sha256:bare");
  AddContent("ns", "sha256:slash");
  AddContent("ns", "sha256:notref");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:root", "sha256:bare", "sha256:slash"}));
}

TEST_F(GcTest, BlobSharedAcrossNamespacesStaysWhileAnyHoldsIt) {
  AddContent("ns", "sha256:shared", {{"containerd.io/gc.root", "x"}});
  AddContent("other", "sha256:shared");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_TRUE(Content("other").empty());
  EXPECT_EQ(Content("ns").size(), 1u);
  EXPECT_TRUE(disk_.contains("sha256:shared"));  // still referenced by "ns"
}

TEST_F(GcTest, LeasesProtectUntilExpiry) {
  AddContent("ns", "sha256:leased", {{"containerd.io/gc.ref.content", "sha256:child"}});
  AddContent("ns", "sha256:child");
  AddContent("ns", "sha256:expired");
  Exec("INSERT INTO leases VALUES('ns', 'live', 1);"
       "INSERT INTO lease_resources VALUES('ns', 'live', 'content', 'sha256:leased');"
       "INSERT INTO leases VALUES('ns', 'old', 1);"
       "INSERT INTO lease_resources VALUES('ns', 'old', 'content', 'sha256:expired');");
  ASSERT_TRUE(db_->Update([](Tx& tx) -> Status {
                   RETURN_IF_ERROR(metadata::WriteObjectLabels(
                       tx, "ns", metadata::kKindLease, "old",
                       {{"containerd.io/gc.expire", "2001-01-01T00:00:00Z"}}));
                   return metadata::WriteObjectLabels(
                       tx, "ns", metadata::kKindLease, "live",
                       {{"containerd.io/gc.expire", "2999-01-01T00:00:00Z"}});
                 }).ok());
  auto stats = gc_->Collect();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->leases_removed, 1);
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:leased", "sha256:child"}));
}

TEST_F(GcTest, FlatLeaseKeepsContentButNotItsReferences) {
  AddContent("ns", "sha256:top", {{"containerd.io/gc.ref.content", "sha256:below"}});
  AddContent("ns", "sha256:below");
  Exec("INSERT INTO leases VALUES('ns', 'flat', 1);"
       "INSERT INTO lease_resources VALUES('ns', 'flat', 'content', 'sha256:top');");
  ASSERT_TRUE(db_->Update([](Tx& tx) {
                   return metadata::WriteObjectLabels(tx, "ns", metadata::kKindLease, "flat",
                                                      {{"containerd.io/gc.flat", "1"}});
                 }).ok());
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:top"}));
}

TEST_F(GcTest, IngestsLiveUntilExpiryAndProtectExpectedContent) {
  int64_t future = metadata::NowNanos() + int64_t{3600} * 1000000000;
  AddContent("ns", "sha256:expected");
  Exec("INSERT INTO ingests VALUES('ns', 'live', 'ns/1/live', 'sha256:expected', " +
       std::to_string(future) + ");"
       "INSERT INTO ingests VALUES('ns', 'stale', 'ns/2/stale', '', 1);"
       "INSERT INTO ingests VALUES('ns', 'leaseless', 'ns/3/leaseless', '', NULL);");
  auto stats = gc_->Collect();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->ingests_removed, 2);
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:expected"}));
}

TEST_F(GcTest, SyncTriggerRunsAPassWithTheBackgroundLoop) {
  AddContent("ns", "sha256:a");
  gc_->Start();
  gc_->Trigger(true);
  EXPECT_GE(gc_->passes(), 1);
  EXPECT_TRUE(Content("ns").empty());
  // Asynchronous triggers coalesce and still run.
  AddContent("ns", "sha256:b");
  gc_->Trigger(false);
  EXPECT_TRUE(berth::testing::WaitFor([&] { return Content("ns").empty(); }));
  gc_->Stop();
}

std::set<std::string> SnapshotKeys(metadata::Db& db, const std::string& ns) {
  std::set<std::string> out;
  EXPECT_TRUE(db.View([&](Tx& tx) -> Status {
                  ASSIGN_OR_RETURN(auto st, tx.Prepare("SELECT snapshotter || '/' || key FROM "
                                                       "snapshots WHERE namespace=?"));
                  st.Bind(1, ns);
                  for (;;) {
                    ASSIGN_OR_RETURN(bool row, st.Step());
                    if (!row) break;
                    out.insert(st.ColumnText(0));
                  }
                  return Status::Ok();
                }).ok());
  return out;
}

class GcSnapshotTest : public GcTest {
 protected:
  void SetUp() override {
    GcTest::SetUp();
    gc_->AddBackend({.name = "snapshot overlayfs",
                     .list = [this]() -> Result<std::vector<std::string>> {
                       return std::vector<std::string>(dirs_.begin(), dirs_.end());
                     },
                     .remove = [this](const std::string& id) -> Status {
                       dirs_.erase(id);
                       return Status::Ok();
                     },
                     .referenced_sql = "SELECT CAST(id AS TEXT) FROM snapshots WHERE "
                                       "snapshotter='overlayfs'"});
  }
  void AddSnapshot(const std::string& ns, const std::string& key, const std::string& parent,
                   const Labels& labels = {}) {
    std::string id = std::to_string(++next_id_);
    Exec("INSERT INTO snapshots(namespace, snapshotter, key, id, parent_key, kind, created_at, "
         "updated_at) VALUES('" + ns + "', 'overlayfs', '" + key + "', " + id + ", '" + parent +
         "', 3, 1, 1)");
    ASSERT_TRUE(db_->Update([&](Tx& tx) {
                     return metadata::WriteObjectLabels(tx, ns, "snapshot/overlayfs", key, labels);
                   }).ok());
    dirs_.insert(id);
  }
  std::set<std::string> dirs_;
  int next_id_ = 0;
};

TEST_F(GcSnapshotTest, UnreferencedSnapshotsGoWithTheirData) {
  AddSnapshot("ns", "l1", "");
  AddSnapshot("ns", "l2", "l1");
  auto stats = gc_->Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->snapshots_removed, 2);
  EXPECT_TRUE(SnapshotKeys(*db_, "ns").empty());
  EXPECT_TRUE(dirs_.empty());
}

TEST_F(GcSnapshotTest, ImageConfigLabelKeepsChainAndParents) {
  // image → manifest → config --gc.ref.snapshot.overlayfs--> top → mid → base
  AddContent("ns", "sha256:manifest", {{"containerd.io/gc.ref.content.config", "sha256:config"}});
  AddContent("ns", "sha256:config", {{"containerd.io/gc.ref.snapshot.overlayfs", "top"}});
  Exec("INSERT INTO images VALUES('ns', 'img', 'x', 'sha256:manifest', 1, '{}', 1, 1)");
  AddSnapshot("ns", "base", "");
  AddSnapshot("ns", "mid", "base");
  AddSnapshot("ns", "top", "mid");
  AddSnapshot("ns", "stray", "base");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(SnapshotKeys(*db_, "ns"),
            (std::set<std::string>{"overlayfs/base", "overlayfs/mid", "overlayfs/top"}));
  EXPECT_EQ(dirs_, (std::set<std::string>{"1", "2", "3"}));
  Exec("DELETE FROM images");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_TRUE(SnapshotKeys(*db_, "ns").empty());
  EXPECT_TRUE(dirs_.empty());
}

TEST_F(GcSnapshotTest, LeaseRootLabelAndSnapshotRefs) {
  AddSnapshot("ns", "leased", "");
  AddSnapshot("ns", "rooted", "", {{"containerd.io/gc.root", "1"},
                                   {"containerd.io/gc.ref.snapshot.overlayfs/x", "refd"},
                                   {"containerd.io/gc.ref.content", "sha256:c"}});
  AddSnapshot("ns", "refd", "");
  AddSnapshot("other", "leased", "");  // same key, other namespace: not held
  AddContent("ns", "sha256:c");
  Exec("INSERT INTO leases VALUES('ns', 'l', 1);"
       "INSERT INTO lease_resources VALUES('ns', 'l', 'snapshots/overlayfs', 'leased');");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(SnapshotKeys(*db_, "ns"), (std::set<std::string>{"overlayfs/leased",
                                                             "overlayfs/rooted",
                                                             "overlayfs/refd"}));
  EXPECT_TRUE(SnapshotKeys(*db_, "other").empty());
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:c"}));
}

TEST_F(GcSnapshotTest, ContainersHoldTheirSnapshotAndWhatTheirLabelsName) {
  // c1's rootfs is "c1" on "base"; c2 names content and another snapshot by gc.ref labels;
  // c3 has no snapshot at all.
  AddSnapshot("ns", "base", "");
  AddSnapshot("ns", "c1", "base");
  AddSnapshot("ns", "extra", "");
  AddSnapshot("ns", "stray", "");
  AddSnapshot("other", "c1", "");  // same key in another namespace: not held by ns's c1
  AddContent("ns", "sha256:checkpoint", {{"containerd.io/gc.ref.content.l", "sha256:layer"}});
  AddContent("ns", "sha256:layer");
  AddContent("ns", "sha256:orphan");
  Exec("INSERT INTO containers(namespace, id, runtime_name, spec_type, spec, snapshotter, "
       "snapshot_key, created_at, updated_at) VALUES"
       "('ns', 'c1', 'rt', 't', '', 'overlayfs', 'c1', 1, 1),"
       "('ns', 'c2', 'rt', 't', '', '', '', 1, 1),"
       "('ns', 'c3', 'rt', 't', '', '', '', 1, 1)");
  ASSERT_TRUE(db_->Update([](Tx& tx) {
                   return metadata::WriteObjectLabels(
                       tx, "ns", metadata::kKindContainer, "c2",
                       {{"containerd.io/gc.ref.content.checkpoint", "sha256:checkpoint"},
                        {"containerd.io/gc.ref.snapshot.overlayfs/x", "extra"}});
                 }).ok());
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(SnapshotKeys(*db_, "ns"),
            (std::set<std::string>{"overlayfs/base", "overlayfs/c1", "overlayfs/extra"}));
  EXPECT_TRUE(SnapshotKeys(*db_, "other").empty());
  EXPECT_EQ(Content("ns"), (std::set<std::string>{"sha256:checkpoint", "sha256:layer"}));
  int64_t containers = 0;
  ASSERT_TRUE(db_->View([&](Tx& tx) -> Status {
                   ASSIGN_OR_RETURN(auto st, tx.Prepare("SELECT COUNT(*) FROM containers"));
                   ASSIGN_OR_RETURN(bool row, st.Step());
                   if (row) containers = st.ColumnInt(0);
                   return Status::Ok();
                 }).ok());
  EXPECT_EQ(containers, 3);  // roots, never collected themselves
  Exec("DELETE FROM containers WHERE id='c1'");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_EQ(SnapshotKeys(*db_, "ns"), (std::set<std::string>{"overlayfs/extra"}));
  Exec("DELETE FROM containers");
  ASSERT_TRUE(db_->Update([](Tx& tx) {
                   return metadata::DeleteObjectLabels(tx, "ns", metadata::kKindContainer, "c2");
                 }).ok());
  ASSERT_TRUE(gc_->Collect());
  EXPECT_TRUE(SnapshotKeys(*db_, "ns").empty());
  EXPECT_TRUE(Content("ns").empty());
  EXPECT_TRUE(dirs_.empty());
}

TEST_F(GcSnapshotTest, UnreachableContentDoesNotHoldSnapshots) {
  AddContent("ns", "sha256:config", {{"containerd.io/gc.ref.snapshot.overlayfs", "s"}});
  AddSnapshot("ns", "s", "");
  ASSERT_TRUE(gc_->Collect());
  EXPECT_TRUE(SnapshotKeys(*db_, "ns").empty());
  EXPECT_TRUE(Content("ns").empty());
}

TEST(Rfc3339Test, Parses) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:01.5Z"), 1500000000);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T01:00:00+01:00"), 0);
  EXPECT_EQ(*ParseRfc3339("2026-11-28T00:00:00Z"), int64_t{1795824000} * 1000000000);
  for (const char* bad : {"", "yesterday", "2026-11-28", "2026-11-28T00:00:00", "2026-11-28T00:00:00Zjunk"}) {
    EXPECT_FALSE(ParseRfc3339(bad)) << bad;
  }
}

}  // namespace
}  // namespace berth::gc
