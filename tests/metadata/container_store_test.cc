#include "metadata/container_store.h"

#include <gtest/gtest.h>

#include "metadata/namespaces.h"
#include "metadata/object_labels.h"
#include "temp_db.h"

namespace berth::metadata {
namespace {

constexpr char kSpecType[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
constexpr char kRunc[] = "io.containerd.runc.v2";

Container MakeContainer(std::string id) {
  Container c;
  c.id = std::move(id);
  c.runtime_name = kRunc;
  c.spec = AnyValue{kSpecType, R"({"ociVersion":"1.0.2-dev"})"};
  c.snapshotter = "overlayfs";
  c.snapshot_key = c.id;
  c.image = "docker.io/library/busybox:latest";
  return c;
}

class ContainerStoreTest : public TempDbTest {
 protected:
  void SetUp() override {
    TempDbTest::SetUp();
    store_ = std::make_unique<ContainerStore>(*db_);
  }
  void TearDown() override {
    store_.reset();
    TempDbTest::TearDown();
  }

  Container MustCreate(const Container& c, const std::string& ns = "ns1") {
    auto created = store_->Create(ns, c);
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? *created : Container{};
  }
  Container MustGet(const std::string& id) {
    auto c = store_->Get("ns1", id);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? *c : Container{};
  }
  Result<Container> Update(const Container& c, std::vector<std::string> paths) {
    return store_->Update("ns1", c, paths);
  }
  std::vector<std::string> Ids(const std::string& ns, std::vector<std::string> filters = {}) {
    auto list = store_->List(ns, filters);
    EXPECT_TRUE(list) << list.error().ToString();
    std::vector<std::string> out;
    if (list) {
      for (const auto& c : *list) out.push_back(c.id);
    }
    return out;
  }

  std::unique_ptr<ContainerStore> store_;
};

TEST_F(ContainerStoreTest, CreateGetKeepsEveryFieldByteForByte) {
  Container c = MakeContainer("c1");
  c.labels = {{"a", "b"}, {"gone", ""}};
  // Binary, NUL-bearing Any values must come back unchanged.
  c.runtime_options = AnyValue{"containerd.runc.v1.Options", std::string("\x08\x01\x00\xff", 4)};
  c.extensions = {{"ext1", {"example.com/Ext", std::string("\x00\x01", 2)}}, {"empty", {"", ""}}};
  c.created_at = 1;  // ignored: the store sets timestamps
  c.updated_at = 2;
  int64_t before = NowNanos();
  Container created = MustCreate(c);
  EXPECT_EQ(created.labels, (Labels{{"a", "b"}}));
  EXPECT_GE(created.created_at, before);
  EXPECT_EQ(created.updated_at, created.created_at);

  Container got = MustGet("c1");
  EXPECT_EQ(got, created);
  EXPECT_EQ(got.runtime_options, c.runtime_options);
  EXPECT_EQ(got.spec, c.spec);
  EXPECT_EQ(got.extensions, c.extensions);
  EXPECT_EQ(got.snapshotter, "overlayfs");
  EXPECT_EQ(got.snapshot_key, "c1");
  EXPECT_EQ(got.image, c.image);
}

TEST_F(ContainerStoreTest, AbsentAndEmptyAnysStayDistinct) {
  Container c = MakeContainer("c1");
  c.spec = AnyValue{};  // present, empty
  c.snapshotter.clear();
  c.snapshot_key.clear();
  c.image.clear();
  Container created = MustCreate(c);
  Container got = MustGet("c1");
  ASSERT_TRUE(got.spec.has_value());
  EXPECT_EQ(*got.spec, AnyValue{});
  EXPECT_FALSE(got.runtime_options.has_value());
  EXPECT_EQ(got, created);
}

TEST_F(ContainerStoreTest, CreateValidation) {
  struct Case {
    Container container;
    std::string message;
  };
  Container no_runtime = MakeContainer("c");
  no_runtime.runtime_name.clear();
  Container no_spec = MakeContainer("c");
  no_spec.spec.reset();
  Container key_without_snapshotter = MakeContainer("c");
  key_without_snapshotter.snapshotter.clear();
  Container empty_ext = MakeContainer("c");
  empty_ext.extensions = {{"", {}}};
  Container big_label = MakeContainer("c");
  big_label.labels = {{"k", std::string(5000, 'v')}};
  const std::string prefix = "create container failed validation: ";
  const Case cases[] = {
      {MakeContainer(""), prefix + "container.ID: identifier must not be empty"},
      {MakeContainer("a..b"), prefix + "container.ID: identifier \"a..b\" must match "
                                       "^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$"},
      {MakeContainer(std::string(77, 'a')), prefix + "container.ID: identifier \"" +
                                                std::string(77, 'a') +
                                                "\" greater than maximum length (76 characters)"},
      {no_runtime, prefix + "container.Runtime.Name must be set"},
      {no_spec, prefix + "container.Spec must be set"},
      {key_without_snapshotter,
       prefix + "container.Snapshotter must be set if container.SnapshotKey is set"},
      {empty_ext, prefix + "container.Extension keys must not be zero-length"},
  };
  for (const Case& c : cases) {
    auto r = store_->Create("ns1", c.container);
    ASSERT_FALSE(r) << c.message;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << c.message;
    EXPECT_EQ(r.error().message(), c.message);
  }
  auto r = store_->Create("ns1", big_label);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(r.error().message().starts_with(prefix + "containers.Labels: label key and value"))
      << r.error().message();
  EXPECT_TRUE(Ids("ns1").empty());
  // A failed create does not make the namespace either.
  NamespaceStore namespaces(*db_);
  EXPECT_TRUE(namespaces.List()->empty());
}

TEST_F(ContainerStoreTest, CreateDuplicate) {
  MustCreate(MakeContainer("c1"));
  Container again = MakeContainer("c1");
  again.image = "other";
  auto dup = store_->Create("ns1", again);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(dup.error().ToString(), "container \"c1\": already exists");
  EXPECT_EQ(MustGet("c1").image, "docker.io/library/busybox:latest");
  // The same ID in another namespace is another container.
  EXPECT_TRUE(store_->Create("ns2", again));
}

TEST_F(ContainerStoreTest, NotFound) {
  auto missing = store_->Get("ns1", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_EQ(missing.error().ToString(), "container \"nope\" in namespace \"ns1\": not found");
  Status del = store_->Delete("ns1", "nope");
  EXPECT_EQ(del.code(), Code::kNotFound);
  EXPECT_EQ(del.ToString(), "container nope: not found");
  auto up = Update(MakeContainer("nope"), {"labels"});
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().ToString(), "container \"nope\": not found");

  MustCreate(MakeContainer("c1"));
  EXPECT_EQ(store_->Get("ns2", "c1").error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete("ns2", "c1").code(), Code::kNotFound);
}

TEST_F(ContainerStoreTest, DeleteRemovesRecordLabelsAndExtensions) {
  Container c = MakeContainer("c1");
  c.labels = {{"old", "1"}};
  c.extensions = {{"e", {"t", "v"}}};
  MustCreate(c);
  ASSERT_TRUE(store_->Delete("ns1", "c1").ok());
  EXPECT_EQ(store_->Get("ns1", "c1").error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete("ns1", "c1").code(), Code::kNotFound);
  Container again = MustCreate(MakeContainer("c1"));
  EXPECT_TRUE(again.labels.empty());
  EXPECT_TRUE(MustGet("c1").labels.empty());
  EXPECT_TRUE(MustGet("c1").extensions.empty());
}

TEST_F(ContainerStoreTest, NamespaceWithContainersCannotBeDeleted) {
  NamespaceStore namespaces(*db_);
  MustCreate(MakeContainer("c1"));
  ASSERT_EQ(namespaces.List()->size(), 1u);  // made implicitly
  Status busy = namespaces.Delete("ns1");
  EXPECT_EQ(busy.code(), Code::kFailedPrecondition);
  EXPECT_EQ(busy.message(), "namespace \"ns1\" must be empty, but it still has containers");
  ASSERT_TRUE(store_->Delete("ns1", "c1").ok());
  EXPECT_TRUE(namespaces.Delete("ns1").ok());
}

TEST_F(ContainerStoreTest, ListSortedAndFiltered) {
  Container a = MakeContainer("alpha");
  a.labels = {{"env", "prod"}, {"io.cri-containerd.kind", "sandbox"}};
  Container b = MakeContainer("beta");
  b.labels = {{"env", "dev"}};
  b.image = "docker.io/library/alpine:3";
  b.runtime_name = "io.containerd.runsc.v1";
  Container c = MakeContainer("gamma");
  c.image.clear();
  MustCreate(c);
  MustCreate(a);
  MustCreate(b);
  using V = std::vector<std::string>;
  V all = {"alpha", "beta", "gamma"};
  EXPECT_EQ(Ids("ns1"), all);
  EXPECT_EQ(Ids("ns1", {""}), all);
  EXPECT_EQ(Ids("ns1", {"id==beta"}), (V{"beta"}));
  EXPECT_EQ(Ids("ns1", {"id~=^(al|ga)"}), (V{"alpha", "gamma"}));
  EXPECT_EQ(Ids("ns1", {"runtime.name==io.containerd.runsc.v1"}), (V{"beta"}));
  EXPECT_EQ(Ids("ns1", {"runtime.name~=runc"}), (V{"alpha", "gamma"}));
  EXPECT_EQ(Ids("ns1", {"runtime"}), V{});
  EXPECT_EQ(Ids("ns1", {"image"}), (V{"alpha", "beta"}));
  EXPECT_EQ(Ids("ns1", {"image==docker.io/library/alpine:3"}), (V{"beta"}));
  EXPECT_EQ(Ids("ns1", {"image!=docker.io/library/alpine:3"}), (V{"alpha", "gamma"}));
  EXPECT_EQ(Ids("ns1", {"labels.env"}), (V{"alpha", "beta"}));
  EXPECT_EQ(Ids("ns1", {"labels.env==prod"}), (V{"alpha"}));
  EXPECT_EQ(Ids("ns1", {"labels.\"io.cri-containerd.kind\"==sandbox"}), (V{"alpha"}));
  EXPECT_EQ(Ids("ns1", {"labels.env==dev", "id==gamma"}), (V{"beta", "gamma"}));
  EXPECT_EQ(Ids("ns1", {"labels.env==dev,id==gamma"}), V{});
  // Not filterable in containerd 1.6: snapshotter and snapshot key.
  EXPECT_EQ(Ids("ns1", {"snapshotter==overlayfs"}), V{});
  EXPECT_EQ(Ids("ns1", {"snapshotkey==alpha"}), V{});
  EXPECT_TRUE(Ids("ns2").empty());
  auto bad = store_->List("ns1", std::vector<std::string>{"labels.env=="});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);

  // List returns whole records: labels and extensions too.
  auto list = store_->List("ns1");
  ASSERT_TRUE(list);
  EXPECT_EQ((*list)[0], MustGet("alpha"));
}

TEST_F(ContainerStoreTest, UpdateWithoutMaskReplacesTheFiveMutableFields) {
  Container c = MakeContainer("c1");
  c.labels = {{"a", "1"}};
  c.runtime_options = AnyValue{"opts", "o"};
  c.extensions = {{"e1", {"t", "1"}}, {"e2", {"t", "2"}}};
  Container created = MustCreate(c);

  Container repl = MakeContainer("c1");
  repl.labels = {{"b", "2"}, {"drop", ""}};
  repl.image = "new-image";
  repl.spec = AnyValue{kSpecType, "{}"};
  repl.snapshot_key = "other-key";
  repl.runtime_options = AnyValue{"changed", "x"};  // runtime is not replaced
  repl.extensions = {{"e2", {"t", "22"}}};
  repl.created_at = 5;
  auto updated = Update(repl, {});
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_EQ(updated->labels, (Labels{{"b", "2"}}));
  EXPECT_EQ(updated->image, "new-image");
  EXPECT_EQ(updated->spec, repl.spec);
  EXPECT_EQ(updated->snapshot_key, "other-key");
  EXPECT_EQ(updated->runtime_options, c.runtime_options);
  EXPECT_EQ(updated->extensions, repl.extensions);
  EXPECT_EQ(updated->created_at, created.created_at);
  EXPECT_GT(updated->updated_at, created.updated_at);
  EXPECT_EQ(MustGet("c1"), *updated);
}

TEST_F(ContainerStoreTest, UpdateRefusesImmutableFields) {
  MustCreate(MakeContainer("c1"));
  Container other_snapshotter = MakeContainer("c1");
  other_snapshotter.snapshotter = "native";
  auto r = Update(other_snapshotter, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "container.Snapshotter field is immutable");
  Container other_runtime = MakeContainer("c1");
  other_runtime.runtime_name = "io.containerd.runsc.v1";
  r = Update(other_runtime, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "container.Runtime.Name field is immutable");
  // No path names them: they are simply not updatable.
  for (const char* path :
       {"snapshotter", "runtime", "runtime.name", "id", "created_at", "spec.x", "Labels"}) {
    r = Update(other_runtime, {path});
    ASSERT_FALSE(r) << path;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.error().message(), "cannot update \"" + std::string(path) + "\" field on \"c1\"");
  }
  // With a mask, differing immutable fields in the request are ignored.
  other_runtime.image = "x";
  r = Update(other_runtime, {"image"});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->runtime_name, kRunc);
  EXPECT_EQ(r->image, "x");
  auto empty_id = Update(Container{}, {"labels"});
  ASSERT_FALSE(empty_id);
  EXPECT_EQ(empty_id.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(empty_id.error().message(), "must specify a container id");
}

TEST_F(ContainerStoreTest, UpdateLabelAndExtensionPaths) {
  Container c = MakeContainer("c1");
  c.labels = {{"keep", "k"}, {"change", "old"}, {"remove", "r"}, {"remove2", "r"}};
  c.extensions = {{"keep", {"t", "k"}}, {"change", {"t", "old"}}, {"remove", {"t", "r"}}};
  MustCreate(c);
  Container in;
  in.id = "c1";
  in.labels = {{"change", "new"}, {"add", "a"}, {"remove2", ""}, {"ignored", "x"}};
  in.extensions = {{"change", {"t", "new"}}, {"add", {"t2", "a"}}, {"ignored", {"t", "x"}}};
  auto r = Update(in, {"labels.change", "labels.add", "labels.remove", "labels.remove2",
                       "extensions.change", "extensions.add", "extensions.remove"});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->labels, (Labels{{"keep", "k"}, {"change", "new"}, {"add", "a"}}));
  EXPECT_EQ(r->extensions,
            (std::map<std::string, AnyValue>{
                {"keep", {"t", "k"}}, {"change", {"t", "new"}}, {"add", {"t2", "a"}}}));
  // Untouched fields stay, though the request left them empty.
  EXPECT_EQ(r->spec, c.spec);
  EXPECT_EQ(r->image, c.image);
  EXPECT_EQ(MustGet("c1"), *r);

  // Whole-map paths, then a key on top: applied in order.
  in.labels = {{"only", "1"}, {"later", "2"}};
  r = Update(in, {"labels", "labels.later"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->labels, (Labels{{"only", "1"}, {"later", "2"}}));
  in.labels = {{"only", "1"}};
  r = Update(in, {"labels.gone", "labels"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->labels, (Labels{{"only", "1"}}));
  in.extensions.clear();
  r = Update(in, {"extensions"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->extensions.empty());
  EXPECT_TRUE(MustGet("c1").extensions.empty());

  // Results are validated: an oversized label, a missing spec.
  in.labels = {{"big", std::string(5000, 'x')}};
  r = Update(in, {"labels.big"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(r.error().message().starts_with("update failed validation: containers.Labels"))
      << r.error().message();
  r = Update(in, {"spec"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "update failed validation: container.Spec must be set");
  in.extensions = {{"", {"t", "v"}}};
  r = Update(in, {"extensions"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "update failed validation: container.Extension keys must not be zero-length");
  EXPECT_EQ(MustGet("c1").labels, (Labels{{"only", "1"}}));
}

TEST_F(ContainerStoreTest, UpdateSnapshotKeyAndImage) {
  Container c = MakeContainer("c1");
  c.snapshotter.clear();
  c.snapshot_key.clear();
  MustCreate(c);
  Container in = MakeContainer("c1");
  in.snapshot_key = "k";
  // A key without a snapshotter is invalid (the snapshotter cannot be set afterwards).
  auto r = Update(in, {"snapshotkey"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "update failed validation: container.Snapshotter must be set if "
            "container.SnapshotKey is set");
  MustCreate(MakeContainer("c2"));
  in.id = "c2";
  in.snapshot_key = "k2";
  in.image = "";
  r = Update(in, {"snapshotkey", "image"});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->snapshot_key, "k2");
  EXPECT_EQ(r->image, "");
}

}  // namespace
}  // namespace berth::metadata
