#include "metadata/lease_store.h"

#include <gtest/gtest.h>

#include "temp_db.h"
#include <unistd.h>

#include <filesystem>

#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

constexpr char kDigestA[] =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kDigestB[] =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

class LeaseStoreTest : public TempDbTest {
 protected:
  void SetUp() override {
    TempDbTest::SetUp();
    store_ = std::make_unique<LeaseStore>(*db_);
  }
  void TearDown() override {
    store_.reset();
    TempDbTest::TearDown();
  }

  std::vector<std::string> Ids(const std::string& ns, std::vector<std::string> filters = {}) {
    auto leases = store_->List(ns, filters);
    EXPECT_TRUE(leases) << leases.error().ToString();
    std::vector<std::string> out;
    if (leases) {
      for (const auto& l : *leases) out.push_back(l.id);
    }
    return out;
  }

  std::unique_ptr<LeaseStore> store_;
};

TEST_F(LeaseStoreTest, CreateListDelete) {
  int64_t before = NowNanos();
  auto l = store_->Create("ns1", "l2", {{"a", "b"}, {"empty", ""}});
  ASSERT_TRUE(l) << l.error().ToString();
  EXPECT_EQ(l->id, "l2");
  EXPECT_EQ(l->labels, (Labels{{"a", "b"}}));  // empty values are not stored
  EXPECT_GE(l->created_at, before);
  EXPECT_LE(l->created_at, NowNanos());
  ASSERT_TRUE(store_->Create("ns1", "l1", {}));

  auto all = store_->List("ns1");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "l1");  // sorted by id, as bolt iterates
  EXPECT_EQ((*all)[1].id, "l2");
  EXPECT_EQ((*all)[1].labels, (Labels{{"a", "b"}}));
  EXPECT_EQ((*all)[1].created_at, l->created_at);

  ASSERT_TRUE(store_->Delete("ns1", "l2").ok());
  EXPECT_EQ(Ids("ns1"), std::vector<std::string>{"l1"});
}

TEST_F(LeaseStoreTest, CreateErrors) {
  auto empty = store_->Create("ns1", "", {});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(empty.error().message(), "lease id must be provided");

  ASSERT_TRUE(store_->Create("ns1", "l1", {{"k", "v"}}));
  auto dup = store_->Create("ns1", "l1", {{"other", "x"}});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(dup.error().ToString(), "lease \"l1\": already exists");

  auto big = store_->Create("ns1", "l2", {{"k", std::string(4096, 'v')}});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(big.error().message().starts_with("lease.Labels: label key and value"))
      << big.error().message();

  // The failed creates left nothing behind, and the duplicate did not touch the original.
  auto all = store_->List("ns1");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].labels, (Labels{{"k", "v"}}));
}

TEST_F(LeaseStoreTest, IdsAreNotIdentifiers) {
  // containerd does not identifier-check lease ids (compat §1.4).
  for (const char* id : {"with space", "a/b", "x:y@z", "-leading", "123-AbC_"}) {
    EXPECT_TRUE(store_->Create("ns1", id, {})) << id;
  }
  EXPECT_EQ(Ids("ns1").size(), 5u);
}

TEST_F(LeaseStoreTest, GcLabelsAreStoredAsPlainLabels) {
  Labels labels{{kGcExpireLabel, "2000-01-01T00:00:00Z"}, {kGcFlatLabel, "true"}};
  ASSERT_TRUE(store_->Create("ns1", "l1", labels));
  auto all = store_->List("ns1");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].labels, labels);  // an expired lease is still listed until GC runs
}

TEST_F(LeaseStoreTest, CreateMakesTheNamespace) {
  NamespaceStore namespaces(*db_);
  ASSERT_TRUE(store_->Create("implicit", "l1", {}));
  auto all = namespaces.List();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].name, "implicit");
  // Leases do not keep a namespace from being deleted, and go with it.
  ASSERT_TRUE(namespaces.Delete("implicit").ok());
  EXPECT_TRUE(Ids("implicit").empty());
  auto again = store_->Create("implicit", "l1", {});
  EXPECT_TRUE(again) << again.error().ToString();
}

TEST_F(LeaseStoreTest, NamespacesAreIsolated) {
  ASSERT_TRUE(store_->Create("ns1", "same", {{"n", "1"}}));
  ASSERT_TRUE(store_->Create("ns2", "same", {{"n", "2"}}));
  ASSERT_TRUE(store_->AddResource("ns1", "same", {.id = "ref1", .type = "ingests"}).ok());
  auto l2 = store_->List("ns2");
  ASSERT_TRUE(l2);
  ASSERT_EQ(l2->size(), 1u);
  EXPECT_EQ((*l2)[0].labels, (Labels{{"n", "2"}}));
  EXPECT_TRUE(store_->ListResources("ns2", "same")->empty());
  EXPECT_EQ(store_->Delete("ns3", "same").code(), Code::kNotFound);
  ASSERT_TRUE(store_->Delete("ns2", "same").ok());
  EXPECT_EQ(Ids("ns1"), std::vector<std::string>{"same"});
  EXPECT_EQ(store_->ListResources("ns1", "same")->size(), 1u);
}

TEST_F(LeaseStoreTest, DeleteUnknownIsNotFound) {
  Status s = store_->Delete("ns1", "nope");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.ToString(), "lease \"nope\": not found");
  ASSERT_TRUE(store_->Create("ns1", "l1", {}));
  ASSERT_TRUE(store_->Delete("ns1", "l1").ok());
  EXPECT_EQ(store_->Delete("ns1", "l1").code(), Code::kNotFound);
}

TEST_F(LeaseStoreTest, DeleteDropsLabelsAndResources) {
  ASSERT_TRUE(store_->Create("ns1", "l1", {{"old", "label"}}));
  ASSERT_TRUE(store_->AddResource("ns1", "l1", {.id = kDigestA, .type = "content"}).ok());
  ASSERT_TRUE(store_->Delete("ns1", "l1").ok());
  ASSERT_TRUE(store_->Create("ns1", "l1", {}));
  auto all = store_->List("ns1");
  ASSERT_TRUE(all);
  EXPECT_TRUE((*all)[0].labels.empty());
  EXPECT_TRUE(store_->ListResources("ns1", "l1")->empty());
  // Nothing of the first lease survives in the shared tables either.
  EXPECT_EQ(db_->CountRowsForTest("labels"), 0);
  EXPECT_EQ(db_->CountRowsForTest("lease_resources"), 0);
}

TEST_F(LeaseStoreTest, ListFilters) {
  ASSERT_TRUE(store_->Create("ns1", "a1", {{"team", "x"}, {"containerd.io/gc.flat", "1"}}));
  ASSERT_TRUE(store_->Create("ns1", "a2", {{"team", "y"}}));
  ASSERT_TRUE(store_->Create("ns1", "b1", {}));
  using V = std::vector<std::string>;
  EXPECT_EQ(Ids("ns1", {""}), (V{"a1", "a2", "b1"}));
  EXPECT_EQ(Ids("ns1", {"id==a2"}), (V{"a2"}));
  EXPECT_EQ(Ids("ns1", {"id~=^a"}), (V{"a1", "a2"}));
  EXPECT_EQ(Ids("ns1", {"id!=a1"}), (V{"a2", "b1"}));
  EXPECT_EQ(Ids("ns1", {"labels.team"}), (V{"a1", "a2"}));
  EXPECT_EQ(Ids("ns1", {"labels.team==y"}), (V{"a2"}));
  EXPECT_EQ(Ids("ns1", {"labels.\"containerd.io/gc.flat\""}), (V{"a1"}));
  EXPECT_EQ(Ids("ns1", {"labels.team==x", "id==b1"}), (V{"a1", "b1"}));  // OR
  EXPECT_EQ(Ids("ns1", {"labels.team==x,id==a2"}), V{});                 // AND
  EXPECT_EQ(Ids("ns1", {"created_at"}), V{});  // not a lease field
  auto bad = store_->List("ns1", std::vector<std::string>{"id=="});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST_F(LeaseStoreTest, Resources) {
  ASSERT_TRUE(store_->Create("ns1", "l1", {}));
  std::vector<LeaseResource> add = {
      {.id = "key2", .type = "snapshots/overlayfs"},
      {.id = kDigestB, .type = "content"},
      {.id = "ref-1", .type = "ingests"},
      {.id = "key1", .type = "snapshots/native"},
      {.id = kDigestA, .type = "content"},
      {.id = "key1", .type = "snapshots/overlayfs"},
  };
  for (const auto& r : add) ASSERT_TRUE(store_->AddResource("ns1", "l1", r).ok()) << r.type;
  // Adding again is fine and does not duplicate.
  ASSERT_TRUE(store_->AddResource("ns1", "l1", {.id = kDigestA, .type = "content"}).ok());

  auto rs = store_->ListResources("ns1", "l1");
  ASSERT_TRUE(rs);
  std::vector<LeaseResource> want = {
      {.id = kDigestA, .type = "content"},
      {.id = kDigestB, .type = "content"},
      {.id = "ref-1", .type = "ingests"},
      {.id = "key1", .type = "snapshots/native"},
      {.id = "key1", .type = "snapshots/overlayfs"},
      {.id = "key2", .type = "snapshots/overlayfs"},
  };
  EXPECT_EQ(*rs, want);

  ASSERT_TRUE(store_->DeleteResource("ns1", "l1", {.id = "key1", .type = "snapshots/overlayfs"})
                  .ok());
  ASSERT_TRUE(store_->DeleteResource("ns1", "l1", {.id = kDigestB, .type = "content"}).ok());
  // Removing what is not there succeeds, as in containerd.
  EXPECT_TRUE(store_->DeleteResource("ns1", "l1", {.id = "absent", .type = "ingests"}).ok());
  EXPECT_TRUE(store_->DeleteResource("ns1", "l1", {.id = "k", .type = "snapshots/zfs"}).ok());
  rs = store_->ListResources("ns1", "l1");
  ASSERT_TRUE(rs);
  EXPECT_EQ(rs->size(), 4u);
}

TEST_F(LeaseStoreTest, ResourceErrors) {
  ASSERT_TRUE(store_->Create("ns1", "l1", {}));
  struct Case {
    LeaseResource r;
    Code code;
    std::string message;
  };
  const Case cases[] = {
      {{.id = "sha256:abc", .type = "content"},
       Code::kInvalidArgument,
       "invalid content resource id sha256:abc: invalid checksum digest length"},
      {{.id = "not-a-digest", .type = "content"},
       Code::kInvalidArgument,
       "invalid content resource id not-a-digest: invalid checksum digest format"},
      {{.id = kDigestA, .type = "content/x"}, Code::kInvalidArgument,
       "invalid resource type content/x"},
      {{.id = "r", .type = "ingests/x"}, Code::kInvalidArgument, "invalid resource type ingests/x"},
      {{.id = "k", .type = "snapshots"}, Code::kInvalidArgument,
       "invalid snapshot resource type snapshots"},
      {{.id = "k", .type = "snapshots/"}, Code::kInvalidArgument,
       "invalid snapshot resource type snapshots/"},
      {{.id = "k", .type = "snapshots/a/b"}, Code::kInvalidArgument,
       "invalid snapshot resource type snapshots/a/b"},
      {{.id = "c", .type = "containers"}, Code::kUnimplemented,
       "resource type containers not supported yet"},
      {{.id = "c", .type = ""}, Code::kUnimplemented, "resource type  not supported yet"},
      {{.id = "c", .type = "Content"}, Code::kUnimplemented,
       "resource type Content not supported yet"},
  };
  for (const Case& c : cases) {
    Status add = store_->AddResource("ns1", "l1", c.r);
    EXPECT_EQ(add.code(), c.code) << c.r.type << " " << c.r.id;
    EXPECT_EQ(add.message(), c.message);
    EXPECT_EQ(store_->DeleteResource("ns1", "l1", c.r).code(), c.code) << c.r.type;
  }
  EXPECT_TRUE(store_->ListResources("ns1", "l1")->empty());

  // An unknown lease is NotFound, and that is checked before the resource.
  for (const LeaseResource& r : {LeaseResource{.id = kDigestA, .type = "content"},
                                 LeaseResource{.id = "c", .type = "containers"}}) {
    Status add = store_->AddResource("ns1", "nope", r);
    EXPECT_EQ(add.code(), Code::kNotFound);
    EXPECT_EQ(add.message(), "lease \"nope\"");
    EXPECT_EQ(store_->DeleteResource("ns1", "nope", r).code(), Code::kNotFound);
  }
  auto list = store_->ListResources("ns1", "nope");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code(), Code::kNotFound);
  EXPECT_EQ(store_->AddResource("ns2", "l1", {.id = "r", .type = "ingests"}).code(),
            Code::kNotFound);
}

TEST_F(LeaseStoreTest, NormalizeKeepsValidResources) {
  const LeaseResource valid[] = {{.id = kDigestA, .type = "content"},
                                 {.id = "any ref", .type = "ingests"},
                                 {.id = "extract-1 sha256:x", .type = "snapshots/o"}};
  for (const LeaseResource& r : valid) {
    auto n = NormalizeLeaseResource(r);
    ASSERT_TRUE(n) << n.error().ToString();
    EXPECT_EQ(*n, r);
  }
}

TEST_F(LeaseStoreTest, SurvivesReopen) {
  ASSERT_TRUE(store_->Create("ns1", "l1", {{"k", "v"}}));
  ASSERT_TRUE(store_->AddResource("ns1", "l1", {.id = "r", .type = "ingests"}).ok());
  store_.reset();
  db_.reset();
  auto db = Db::Open(dir_ + "/meta.db");
  ASSERT_TRUE(db);
  db_ = std::move(*db);
  store_ = std::make_unique<LeaseStore>(*db_);
  auto all = store_->List("ns1");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].labels, (Labels{{"k", "v"}}));
  EXPECT_EQ(store_->ListResources("ns1", "l1")->size(), 1u);
}

}  // namespace
}  // namespace berth::metadata
