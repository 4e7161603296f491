#include "metadata/namespaces.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "content/digest.h"
#include "content/local/store.h"
#include "metadata/content_store.h"
#include "metadata/image_store.h"
#include "metadata/lease_store.h"
#include "metadata/snapshot_store.h"
#include "snapshots/overlay/overlay.h"

namespace berth::metadata {
namespace {

class NamespaceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-ns-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto db = Db::Open(dir_ + "/meta.db");
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    store_ = std::make_unique<NamespaceStore>(*db_);
  }
  void TearDown() override {
    store_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<NamespaceStore> store_;
};

TEST_F(NamespaceStoreTest, CreateListGet) {
  ASSERT_TRUE(store_->Create("n2", {}).ok());
  ASSERT_TRUE(store_->Create("n1", {{"a", "b"}}).ok());
  auto all = store_->List();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "n1");  // sorted, as bolt iterates
  EXPECT_EQ((*all)[0].labels, (Labels{{"a", "b"}}));
  EXPECT_EQ((*all)[1].name, "n2");
  EXPECT_EQ(*store_->GetLabels("n1"), (Labels{{"a", "b"}}));
}

TEST_F(NamespaceStoreTest, CreateErrors) {
  ASSERT_TRUE(store_->Create("n1", {}).ok());
  Status dup = store_->Create("n1", {});
  EXPECT_EQ(dup.code(), Code::kAlreadyExists);
  EXPECT_EQ(dup.message(), "namespace \"n1\"");
  EXPECT_EQ(store_->Create("bad name", {}).code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->Create("", {}).code(), Code::kInvalidArgument);
  Status big = store_->Create("n2", {{"k", std::string(1 << 20, 'v')}});
  EXPECT_EQ(big.code(), Code::kInvalidArgument);
  EXPECT_TRUE(big.message().starts_with("namespace.Labels: label key and value")) << big.message();
  // Nothing half-created.
  EXPECT_EQ(store_->List()->size(), 1u);
}

TEST_F(NamespaceStoreTest, UnknownNamespaceHasNoLabelsNotAnError) {
  auto labels = store_->GetLabels("never-created");
  ASSERT_TRUE(labels);
  EXPECT_TRUE(labels->empty());
}

TEST_F(NamespaceStoreTest, SetLabelsEditsAndClears) {
  ASSERT_TRUE(store_->Create("n1", {{"a", "1"}, {"b", "2"}}).ok());
  auto after = store_->SetLabels("n1", false, {{"a", ""}, {"c", "3"}});
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, (Labels{{"b", "2"}, {"c", "3"}}));
  auto replaced = store_->SetLabels("n1", true, {{"z", "9"}});
  ASSERT_TRUE(replaced);
  EXPECT_EQ(*replaced, (Labels{{"z", "9"}}));
}

TEST_F(NamespaceStoreTest, SetLabelsCreatesImplicitly) {
  ASSERT_TRUE(store_->SetLabels("implicit", false, {{"k", "v"}}));
  auto all = store_->List();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].name, "implicit");
  EXPECT_EQ(store_->SetLabels("bad name", false, {}).error().code(), Code::kInvalidArgument);
  auto big = store_->SetLabels("implicit", false, {{"k", std::string(5000, 'v')}});
  EXPECT_EQ(big.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(*store_->GetLabels("implicit"), (Labels{{"k", "v"}}));
}

TEST_F(NamespaceStoreTest, DeleteUnknownIsNotFound) {
  Status s = store_->Delete("nope");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "namespace \"nope\"");
}

TEST_F(NamespaceStoreTest, DeleteRemovesLabelsToo) {
  ASSERT_TRUE(store_->Create("n1", {{"a", "b"}}).ok());
  ASSERT_TRUE(store_->Delete("n1").ok());
  EXPECT_TRUE(store_->List()->empty());
  ASSERT_TRUE(store_->Create("n1", {}).ok());
  EXPECT_TRUE(store_->GetLabels("n1")->empty());  // old labels did not come back
}

// The emptiness check consults every object table: images, blobs, containers, snapshots.
TEST_F(NamespaceStoreTest, DeleteRefusesWhileObjectsRemain) {
  ASSERT_TRUE(store_->Create("busy", {}).ok());
  ASSERT_TRUE(store_->Create("other", {}).ok());
  ImageStore images(*db_);
  Image img;
  img.name = "docker.io/library/busybox:latest";
  img.target = {.media_type = "application/vnd.oci.image.index.v1+json",
                .digest = content::DigestOf("index"),
                .size = 5};
  ASSERT_TRUE(images.Create("busy", img));
  auto overlay = snapshots::OverlayBackend::Open(dir_ + "/overlayfs", false);
  ASSERT_TRUE(overlay) << overlay.error().ToString();
  SnapshotStore snapshots(*db_, **overlay);
  ASSERT_TRUE(snapshots.Prepare({"busy", ""}, "k", "", {}));
  auto local = content::LocalStore::Open(dir_ + "/content");
  ASSERT_TRUE(local) << local.error().ToString();
  ContentStore content(*db_, **local);
  {
    auto w = content.OpenWriter("other", "", "blob", 0, "");
    ASSERT_TRUE(w) << w.error().ToString();
    ASSERT_TRUE((*w)->Write("x").ok());
    ASSERT_TRUE((*w)->Commit(0, "", {}).ok());
  }

  Status s = store_->Delete("busy");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "namespace \"busy\" must be empty, but it still has images, "
            "snapshots on \"overlayfs\" snapshotter");
  EXPECT_EQ(store_->Delete("other").message(),
            "namespace \"other\" must be empty, but it still has blobs");
  EXPECT_EQ(store_->List()->size(), 2u);
  ASSERT_TRUE(images.Delete("busy", img.name).ok());
  ASSERT_TRUE(snapshots.Remove({"busy", ""}, "k").ok());
  EXPECT_TRUE(store_->Delete("busy").ok());
}

TEST_F(NamespaceStoreTest, LeasesDoNotBlockDelete) {
  ASSERT_TRUE(store_->Create("leased", {}).ok());
  ASSERT_TRUE(LeaseStore(*db_).Create("leased", "l1", {}));
  EXPECT_TRUE(store_->Delete("leased").ok());
}

TEST_F(NamespaceStoreTest, PersistsAcrossReopen) {
  ASSERT_TRUE(store_->Create("keep", {{"x", "y"}}).ok());
  store_.reset();
  db_.reset();
  auto db = Db::Open(dir_ + "/meta.db");
  ASSERT_TRUE(db);
  NamespaceStore again(**db);
  EXPECT_EQ(*again.GetLabels("keep"), (Labels{{"x", "y"}}));
}

}  // namespace
}  // namespace berth::metadata
