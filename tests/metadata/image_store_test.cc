#include "metadata/image_store.h"

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
constexpr char kIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifest[] = "application/vnd.docker.distribution.manifest.v2+json";

Image MakeImage(std::string name, std::string digest = kDigestA, int64_t size = 100,
                std::string media_type = kIndex) {
  Image img;
  img.name = std::move(name);
  img.target.digest = std::move(digest);
  img.target.size = size;
  img.target.media_type = std::move(media_type);
  return img;
}

class ImageStoreTest : public TempDbTest {
 protected:
  void SetUp() override {
    TempDbTest::SetUp();
    store_ = std::make_unique<ImageStore>(*db_);
  }
  void TearDown() override {
    store_.reset();
    TempDbTest::TearDown();
  }

  std::vector<std::string> Names(const std::string& ns, std::vector<std::string> filters = {}) {
    auto images = store_->List(ns, filters);
    EXPECT_TRUE(images) << images.error().ToString();
    std::vector<std::string> out;
    if (images) {
      for (const auto& i : *images) out.push_back(i.name);
    }
    return out;
  }

  // Creates `img` in ns1 and returns the stored image.
  Image MustCreate(const Image& img) {
    auto created = store_->Create("ns1", img);
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? *created : Image{};
  }

  Status Update(const Image& img, std::vector<std::string> paths) {
    auto r = store_->Update("ns1", img, paths);
    return r ? Status::Ok() : r.error();
  }

  Image MustGet(const std::string& name) {
    auto img = store_->Get("ns1", name);
    EXPECT_TRUE(img) << img.error().ToString();
    return img ? *img : Image{};
  }

  std::unique_ptr<ImageStore> store_;
};

TEST_F(ImageStoreTest, CreateGet) {
  Image img = MakeImage("docker.io/library/busybox:latest");
  img.labels = {{"a", "b"}, {"gone", ""}};
  img.target.annotations = {{"org.opencontainers.image.ref.name", "latest"}, {"empty", ""}};
  img.created_at = 1;  // ignored: the store sets timestamps
  img.updated_at = 2;
  int64_t before = NowNanos();
  Image created = MustCreate(img);
  EXPECT_EQ(created.name, img.name);
  EXPECT_EQ(created.labels, (Labels{{"a", "b"}}));
  EXPECT_EQ(created.target.annotations,
            (std::map<std::string, std::string>{{"org.opencontainers.image.ref.name", "latest"}}));
  EXPECT_GE(created.created_at, before);
  EXPECT_EQ(created.updated_at, created.created_at);

  Image got = MustGet(img.name);
  EXPECT_EQ(got.name, img.name);
  EXPECT_EQ(got.labels, created.labels);
  EXPECT_EQ(got.target, created.target);
  EXPECT_EQ(got.created_at, created.created_at);
  EXPECT_EQ(got.updated_at, created.updated_at);
}

TEST_F(ImageStoreTest, NamesAreFreeForm) {
  // ctr stores exactly what was typed; CRI stores "sha256:<id>" names too.
  for (const char* name : {"busybox", "sha256:abc", "a b", "x/y/z@sha256:123", "ünïcode"}) {
    MustCreate(MakeImage(name));
  }
  EXPECT_EQ(Names("ns1").size(), 5u);
}

TEST_F(ImageStoreTest, CreateValidation) {
  struct Case {
    Image image;
    std::string message;
  };
  Image big_label = MakeImage("n");
  big_label.labels = {{"k", std::string(5000, 'v')}};
  const Case cases[] = {
      {MakeImage(""), "image name must not be empty"},
      {MakeImage("n", "sha256:nope"),
       "Target.Digest \"sha256:nope\" invalid: invalid checksum digest length"},
      {MakeImage("n", ""), "Target.Digest \"\" invalid: invalid checksum digest format"},
      {MakeImage("n", kDigestA, 0), "Target.Size must be greater than zero"},
      {MakeImage("n", kDigestA, -5), "Target.Size must be greater than zero"},
      {MakeImage("n", kDigestA, 1, ""), "Target.MediaType must be set"},
  };
  for (const Case& c : cases) {
    auto r = store_->Create("ns1", c.image);
    ASSERT_FALSE(r) << c.message;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.error().message(), c.message);
  }
  auto r = store_->Create("ns1", big_label);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(r.error().message().starts_with("image.Labels: label key and value"));
  EXPECT_TRUE(Names("ns1").empty());
  // A failed create does not make the namespace either.
  NamespaceStore namespaces(*db_);
  EXPECT_TRUE(namespaces.List()->empty());
}

TEST_F(ImageStoreTest, CreateDuplicate) {
  MustCreate(MakeImage("img", kDigestA));
  auto dup = store_->Create("ns1", MakeImage("img", kDigestB));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(dup.error().ToString(), "image \"img\": already exists");
  EXPECT_EQ(MustGet("img").target.digest, kDigestA);
  // Validation comes first, as in containerd.
  auto invalid_dup = store_->Create("ns1", MakeImage("img", kDigestA, 0));
  ASSERT_FALSE(invalid_dup);
  EXPECT_EQ(invalid_dup.error().code(), Code::kInvalidArgument);
  // The same name in another namespace is another image.
  EXPECT_TRUE(store_->Create("ns2", MakeImage("img", kDigestB)));
}

TEST_F(ImageStoreTest, GetAndDeleteNotFound) {
  auto missing = store_->Get("ns1", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_EQ(missing.error().ToString(), "image \"nope\": not found");
  Status del = store_->Delete("ns1", "nope");
  EXPECT_EQ(del.code(), Code::kNotFound);
  EXPECT_EQ(del.message(), "image \"nope\"");

  MustCreate(MakeImage("img"));
  EXPECT_EQ(store_->Get("ns2", "img").error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete("ns2", "img").code(), Code::kNotFound);
}

TEST_F(ImageStoreTest, DeleteRemovesImageAndLabels) {
  Image img = MakeImage("img");
  img.labels = {{"old", "1"}};
  MustCreate(img);
  ASSERT_TRUE(store_->Delete("ns1", "img").ok());
  EXPECT_EQ(store_->Get("ns1", "img").error().code(), Code::kNotFound);
  EXPECT_EQ(store_->Delete("ns1", "img").code(), Code::kNotFound);
  Image again = MustCreate(MakeImage("img"));
  EXPECT_TRUE(again.labels.empty());
  EXPECT_TRUE(MustGet("img").labels.empty());
}

TEST_F(ImageStoreTest, NamespaceLifecycle) {
  NamespaceStore namespaces(*db_);
  MustCreate(MakeImage("img"));
  ASSERT_EQ(namespaces.List()->size(), 1u);  // made implicitly
  Status busy = namespaces.Delete("ns1");
  EXPECT_EQ(busy.code(), Code::kFailedPrecondition);
  EXPECT_NE(busy.message().find("images"), std::string::npos) << busy.message();
  ASSERT_TRUE(store_->Delete("ns1", "img").ok());
  EXPECT_TRUE(namespaces.Delete("ns1").ok());
}

TEST_F(ImageStoreTest, ListSortedAndFiltered) {
  Image a = MakeImage("docker.io/library/alpine:3", kDigestA, 10, kIndex);
  a.labels = {{"env", "prod"}, {"io.cri-containerd.image", "managed"}};
  a.target.annotations = {{"org.opencontainers.image.ref.name", "3"}};
  Image b = MakeImage("docker.io/library/busybox:1", kDigestB, 20, kManifest);
  b.labels = {{"env", "dev"}};
  Image c = MakeImage("sha256:cccc", kDigestB, 30, kManifest);
  MustCreate(c);
  MustCreate(a);
  MustCreate(b);
  using V = std::vector<std::string>;
  V all = {"docker.io/library/alpine:3", "docker.io/library/busybox:1", "sha256:cccc"};
  EXPECT_EQ(Names("ns1"), all);
  EXPECT_EQ(Names("ns1", {""}), all);
  EXPECT_EQ(Names("ns1", {"name==docker.io/library/busybox:1"}), (V{b.name}));
  EXPECT_EQ(Names("ns1", {"name~=busybox"}), (V{b.name}));
  EXPECT_EQ(Names("ns1", {std::string("target.digest==") + kDigestB}), (V{b.name, c.name}));
  EXPECT_EQ(Names("ns1", {"target.mediatype~=index"}), (V{a.name}));
  EXPECT_EQ(Names("ns1", {"target.mediatype==\"" + std::string(kManifest) + "\""}),
            (V{b.name, c.name}));
  EXPECT_EQ(Names("ns1", {"target.size==10"}), V{});  // size is not filterable
  EXPECT_EQ(Names("ns1", {"target"}), V{});
  EXPECT_EQ(Names("ns1", {"labels.env"}), (V{a.name, b.name}));
  EXPECT_EQ(Names("ns1", {"labels.env==prod"}), (V{a.name}));
  EXPECT_EQ(Names("ns1", {"labels.env!=prod"}), (V{b.name, c.name}));
  EXPECT_EQ(Names("ns1", {"labels.\"io.cri-containerd.image\"==managed"}), (V{a.name}));
  EXPECT_EQ(Names("ns1", {"annotations.\"org.opencontainers.image.ref.name\"==3"}), (V{a.name}));
  EXPECT_EQ(Names("ns1", {"labels.env==dev", "name==sha256:cccc"}), (V{b.name, c.name}));
  EXPECT_EQ(Names("ns1", {"labels.env==dev,target.mediatype~=index"}), V{});
  EXPECT_TRUE(Names("ns2").empty());
  auto bad = store_->List("ns1", std::vector<std::string>{"labels.env=="});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST_F(ImageStoreTest, UpdateWithoutMaskReplacesAllButCreatedAt) {
  Image img = MakeImage("img", kDigestA, 10, kIndex);
  img.labels = {{"a", "1"}, {"b", "2"}};
  img.target.annotations = {{"x", "1"}};
  Image created = MustCreate(img);

  Image repl = MakeImage("img", kDigestB, 20, kManifest);
  repl.labels = {{"c", "3"}, {"drop", ""}};
  repl.created_at = 5;
  auto updated = store_->Update("ns1", repl, {});
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_EQ(updated->labels, (Labels{{"c", "3"}}));
  EXPECT_EQ(updated->target, repl.target);  // annotations gone with the old target
  EXPECT_EQ(updated->created_at, created.created_at);
  EXPECT_GT(updated->updated_at, created.updated_at);

  Image got = MustGet("img");
  EXPECT_EQ(got.labels, updated->labels);
  EXPECT_EQ(got.target, updated->target);
  EXPECT_EQ(got.created_at, created.created_at);
  EXPECT_EQ(got.updated_at, updated->updated_at);

  // A full replace is validated like a create: a request carrying only labels fails.
  Image labels_only;
  labels_only.name = "img";
  labels_only.labels = {{"z", "9"}};
  Status s = Update(labels_only, {});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "Target.Digest \"\" invalid: invalid checksum digest format");
  EXPECT_EQ(MustGet("img").labels, (Labels{{"c", "3"}}));
}

TEST_F(ImageStoreTest, UpdateLabelPaths) {
  Image img = MakeImage("img");
  img.labels = {{"keep", "k"}, {"change", "old"}, {"remove", "r"}, {"remove2", "r"}};
  MustCreate(img);

  Image in;  // target unset: label paths never look at it
  in.name = "img";
  in.labels = {{"change", "new"}, {"add", "a"}, {"remove2", ""}, {"ignored", "i"}};
  auto u = store_->Update("ns1", in, {"labels.change", "labels.add", "labels.remove",
                                      "labels.remove2"});
  ASSERT_TRUE(u) << u.error().ToString();
  Labels want = {{"keep", "k"}, {"change", "new"}, {"add", "a"}};
  EXPECT_EQ(u->labels, want);
  EXPECT_EQ(u->target, MakeImage("img").target);
  EXPECT_EQ(MustGet("img").labels, want);

  // Keys may contain dots: everything after "labels." is the key.
  in.labels = {{"containerd.io/gc.ref.content.0", kDigestA}};
  ASSERT_TRUE(Update(in, {"labels.containerd.io/gc.ref.content.0"}).ok());
  EXPECT_EQ(MustGet("img").labels.at("containerd.io/gc.ref.content.0"), kDigestA);

  // "labels" replaces the whole set.
  in.labels = {{"only", "this"}, {"not", ""}};
  ASSERT_TRUE(Update(in, {"labels"}).ok());
  EXPECT_EQ(MustGet("img").labels, (Labels{{"only", "this"}}));

  // The resulting labels are validated.
  in.labels = {{"huge", std::string(4096, 'x')}};
  Status s = Update(in, {"labels.huge"});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_TRUE(s.message().starts_with("image.Labels: label key and value")) << s.message();
  EXPECT_EQ(MustGet("img").labels, (Labels{{"only", "this"}}));
}

TEST_F(ImageStoreTest, UpdateTargetAndAnnotationPaths) {
  Image img = MakeImage("img", kDigestA, 10, kIndex);
  img.labels = {{"l", "1"}};
  img.target.annotations = {{"keep", "k"}, {"change", "old"}, {"remove", "r"}};
  Image created = MustCreate(img);

  Image in = MakeImage("img", kDigestB, 20, kManifest);
  in.labels = {{"ignored", "x"}};
  in.target.annotations = {{"change", "new"}, {"add", "a"}};

  // annotations.<key>: one key, the rest of the target untouched.
  ASSERT_TRUE(Update(in, {"annotations.change", "annotations.add", "annotations.remove"}).ok());
  Image got = MustGet("img");
  EXPECT_EQ(got.target.digest, kDigestA);
  EXPECT_EQ(got.target.annotations,
            (std::map<std::string, std::string>{{"keep", "k"}, {"change", "new"}, {"add", "a"}}));
  EXPECT_EQ(got.labels, img.labels);

  // annotations: the whole map.
  in.target.annotations = {{"only", "this"}, {"empty", ""}};
  ASSERT_TRUE(Update(in, {"annotations"}).ok());
  got = MustGet("img");
  EXPECT_EQ(got.target.annotations, (std::map<std::string, std::string>{{"only", "this"}}));
  EXPECT_EQ(got.target.digest, kDigestA);

  // target: digest, size, media type and annotations as a unit; labels untouched.
  in.target.annotations = {{"t", "1"}};
  auto u = store_->Update("ns1", in, {"target"});
  ASSERT_TRUE(u) << u.error().ToString();
  EXPECT_EQ(u->target, in.target);
  EXPECT_EQ(u->labels, img.labels);
  EXPECT_EQ(u->created_at, created.created_at);
  EXPECT_EQ(MustGet("img").target, in.target);

  // target plus a label in one call.
  Image both = MakeImage("img", kDigestA, 30, kIndex);
  both.labels = {{"new", "n"}};
  ASSERT_TRUE(Update(both, {"labels.new", "target"}).ok());
  got = MustGet("img");
  EXPECT_EQ(got.target, both.target);
  EXPECT_EQ(got.labels, (Labels{{"l", "1"}, {"new", "n"}}));

  // An invalid target is refused and nothing changes.
  Status s = Update(MakeImage("img", kDigestB, 0), {"target"});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "Target.Size must be greater than zero");
  EXPECT_EQ(MustGet("img").target, both.target);
}

TEST_F(ImageStoreTest, UpdateErrors) {
  MustCreate(MakeImage("img"));
  Image in = MakeImage("img");

  Status unknown = Update(in, {"labels.ok", "name"});
  EXPECT_EQ(unknown.code(), Code::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "cannot update \"name\" field on image \"img\"");
  for (const char* path : {"created_at", "target.digest", "label", "annotation.x", ""}) {
    EXPECT_EQ(Update(in, {path}).code(), Code::kInvalidArgument) << path;
  }

  Status missing = Update(MakeImage("nope"), {"labels"});
  EXPECT_EQ(missing.code(), Code::kNotFound);
  EXPECT_EQ(missing.ToString(), "image \"nope\": not found");
  // NotFound wins over a bad path or an invalid image, as the image is read first.
  EXPECT_EQ(Update(MakeImage("nope"), {"bogus"}).code(), Code::kNotFound);
  EXPECT_EQ(Update(MakeImage("nope", "x"), {}).code(), Code::kNotFound);
  EXPECT_EQ(store_->Update("ns2", in, {}).error().code(), Code::kNotFound);

  Status no_name = Update(MakeImage(""), {});
  EXPECT_EQ(no_name.code(), Code::kInvalidArgument);
  EXPECT_EQ(no_name.message(), "image name is required for update");
}

TEST_F(ImageStoreTest, CorruptAnnotationsAreDataLoss) {
  MustCreate(MakeImage("img"));
  ASSERT_TRUE(store_->SetRawAnnotationsForTest("ns1", "img", "[1").ok());
  auto got = store_->Get("ns1", "img");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), Code::kDataLoss);
  EXPECT_EQ(store_->List("ns1").error().code(), Code::kDataLoss);
  ASSERT_TRUE(store_->SetRawAnnotationsForTest("ns1", "img", "{\"a\":1}").ok());
  EXPECT_EQ(store_->Get("ns1", "img").error().code(), Code::kDataLoss);
}

}  // namespace
}  // namespace berth::metadata
