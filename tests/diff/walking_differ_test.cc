// The walking differ (diff::Applier + diff::Comparer) over an in-memory content store: where
// Apply writes (overlay upperdir, writable bind, temp mount), how Compare stores the layer it
// makes (labels, refs, failures), and that what Compare makes, Apply reproduces. No gRPC.
#include "diff/walking_differ.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "content/digest.h"
#include "mem_content.h"

namespace berth::diff {
namespace {

namespace fs = std::filesystem;

constexpr char kTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kTarGz[] = "application/vnd.oci.image.layer.v1.tar+gzip";
const Ctx kCtx{.ns = "default", .lease = ""};

// A plain ustar stream of regular files (no directory entries: parents are implicit).
std::string Ustar(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  for (const auto& [name, data] : files) {
    char h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 99));
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(h + 136, 12, "%011o", 1700000000);
    h[156] = '0';
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out.append(h, 512);
    out += data;
    if (data.size() % 512) out.append(512 - data.size() % 512, '\0');
  }
  return out + std::string(1024, '\0');
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary) << data;
}

class WalkingDifferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (layer owners, bind mounts)";
    char tmpl[] = "/tmp/walking-differ-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    differ_ = std::make_unique<WalkingDiffer>(content_, (root_ / "tmpmounts").string());
  }
  void TearDown() override {
    if (root_.empty()) return;
    // Nothing may stay mounted under the temp-mount base: rmdir fails on a mount point.
    std::error_code ec;
    if (fs::exists(root_ / "tmpmounts")) {
      EXPECT_TRUE(fs::is_empty(root_ / "tmpmounts")) << "a temp mount was left behind";
    }
    fs::remove_all(root_, ec);
  }
  fs::path Dir(const std::string& name) {
    fs::create_directories(root_ / name);
    return root_ / name;
  }
  static Mount Bind(const fs::path& p, bool ro = false) {
    Mount m{.type = "bind", .source = p.string(), .options = {"rbind"}};
    m.options.push_back(ro ? "ro" : "rw");
    return m;
  }
  Descriptor PutLayer(const std::string& blob, const char* media_type) {
    content_.Put(kCtx.ns, blob);
    return {.media_type = media_type, .digest = content::DigestOf(blob),
            .size = static_cast<int64_t>(blob.size())};
  }

  fs::path root_;
  MemContent content_;
  std::unique_ptr<WalkingDiffer> differ_;
};

TEST_F(WalkingDifferTest, ApplyToWritableBindWritesIntoItsSource) {
  fs::path target = Dir("target");
  std::string tar = Ustar({{"a/b.txt", "hello"}});
  auto applied = differ_->Apply(kCtx, PutLayer(tar, kTar), {Bind(target)});
  ASSERT_TRUE(applied) << applied.error().ToString();
  EXPECT_EQ(applied->media_type, kTar);
  EXPECT_EQ(applied->digest, content::DigestOf(tar));  // the diffID
  EXPECT_EQ(applied->size, static_cast<int64_t>(tar.size()));
  EXPECT_EQ(ReadFile(target / "a/b.txt"), "hello");
}

TEST_F(WalkingDifferTest, ApplyToOverlayWritesTheUpperdirWithOverlayWhiteouts) {
  fs::path lower1 = Dir("l1"), lower2 = Dir("l2"), upper = Dir("upper"), work = Dir("work");
  // Implicit parent "d" takes mode and owner from the first lowerdir that has it (l2 here).
  fs::create_directory(lower2 / "d");
  ASSERT_EQ(::chmod((lower2 / "d").c_str(), 0705), 0);
  WriteFile(lower1 / "gone", "x");
  Mount overlay{.type = "overlay",
                .source = "overlay",
                .options = {"workdir=" + work.string(), "upperdir=" + upper.string(),
                            "lowerdir=" + lower1.string() + ":" + lower2.string()}};
  std::string tar = Ustar({{"d/f", "data"}, {".wh.gone", ""}});
  auto applied = differ_->Apply(kCtx, PutLayer(tar, kTar), {overlay});
  ASSERT_TRUE(applied) << applied.error().ToString();
  EXPECT_EQ(ReadFile(upper / "d/f"), "data");
  struct stat st;
  ASSERT_EQ(::stat((upper / "d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0705u);
  // An overlay whiteout is a 0:0 character device in the upperdir; the lower file stays.
  ASSERT_EQ(::lstat((upper / "gone").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_TRUE(fs::exists(lower1 / "gone"));
}

TEST_F(WalkingDifferTest, ApplyToReadOnlyBindGoesThroughATempMountAndFails) {
  fs::path target = Dir("ro-target");
  std::string tar = Ustar({{"f", "x"}});
  auto applied = differ_->Apply(kCtx, PutLayer(tar, kTar), {Bind(target, /*ro=*/true)});
  ASSERT_FALSE(applied);
  EXPECT_TRUE(applied.error().message().starts_with("failed to extract layer " +
                                                    content::DigestOf(tar) + ": "))
      << applied.error().ToString();
  EXPECT_FALSE(fs::exists(target / "f"));
}

TEST_F(WalkingDifferTest, ApplyErrors) {
  std::string tar = Ustar({{"f", "x"}});
  auto no_mounts = differ_->Apply(kCtx, PutLayer(tar, kTar), {});
  ASSERT_FALSE(no_mounts);
  EXPECT_EQ(no_mounts.error(), InvalidArgument("no mounts to apply the diff to"));

  Descriptor missing{.media_type = kTar, .digest = content::DigestOf("nothing"), .size = 7};
  auto not_found = differ_->Apply(kCtx, missing, {Bind(Dir("t"))});
  ASSERT_FALSE(not_found);
  EXPECT_EQ(not_found.error().code(), Code::kNotFound);
  EXPECT_TRUE(not_found.error().message().starts_with("failed to get reader from content store"));

  // Another namespace does not see the blob.
  auto other_ns = differ_->Apply({.ns = "other"}, PutLayer(tar, kTar), {Bind(Dir("t"))});
  ASSERT_FALSE(other_ns);
  EXPECT_EQ(other_ns.error().code(), Code::kNotFound);

  auto bad_type = differ_->Apply(kCtx, PutLayer(tar, "application/x-rar"), {Bind(Dir("t"))});
  ASSERT_FALSE(bad_type);
  EXPECT_EQ(bad_type.error().code(), Code::kUnimplemented);
}

TEST_F(WalkingDifferTest, CompareStoresAGzipLayerThatApplyReproduces) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(lower / "same", "same");
  WriteFile(upper / "same", "same");
  fs::last_write_time(upper / "same", fs::last_write_time(lower / "same"));  // unchanged
  fs::create_directory(upper / "etc");
  WriteFile(upper / "etc/new.conf", "k=v\n");
  auto layer = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                {.labels = {{"custom", "1"}}});
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->media_type, kTarGz);  // the default
  auto info = content_.Info(kCtx.ns, layer->digest);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, layer->size);
  EXPECT_EQ(info->labels.at("custom"), "1");
  ASSERT_TRUE(info->labels.contains(kUncompressedLabel));
  EXPECT_TRUE(content_.ingests.empty());  // committed, and the generated ref is gone

  fs::path target = Dir("target");
  auto applied = differ_->Apply(kCtx, *layer, {Bind(target)});
  ASSERT_TRUE(applied) << applied.error().ToString();
  EXPECT_EQ(applied->digest, info->labels.at(kUncompressedLabel));  // diffID matches
  EXPECT_EQ(ReadFile(target / "etc/new.conf"), "k=v\n");
  EXPECT_FALSE(fs::exists(target / "same"));  // unchanged files are not in the layer
}

TEST_F(WalkingDifferTest, CompareOfAnExistingBlobOnlyAddsTheUncompressedLabel) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(upper / "f", "content");
  auto first = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                {.media_type = kTarGz, .labels = {{"a", "1"}}});
  ASSERT_TRUE(first) << first.error().ToString();
  auto& blob = content_.blobs.at({kCtx.ns, first->digest});
  blob.labels.erase(kUncompressedLabel);

  auto second = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                 {.media_type = kTarGz, .labels = {{"b", "2"}}});
  ASSERT_TRUE(second) << second.error().ToString();
  ASSERT_EQ(second->digest, first->digest);
  const Labels& labels = content_.blobs.at({kCtx.ns, first->digest}).labels;
  EXPECT_EQ(labels.count("a"), 1u);
  EXPECT_EQ(labels.count("b"), 0u);
  EXPECT_EQ(labels.count(kUncompressedLabel), 1u);
}

TEST_F(WalkingDifferTest, CompareUncompressedHasNoUncompressedLabel) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(upper / "f", "x");
  auto layer = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                {.media_type = kTar});
  ASSERT_TRUE(layer) << layer.error().ToString();
  EXPECT_EQ(layer->media_type, kTar);
  EXPECT_FALSE(content_.blobs.at({kCtx.ns, layer->digest}).labels.contains(kUncompressedLabel));
}

TEST_F(WalkingDifferTest, CompareFailureAbortsAGeneratedRefButKeepsAGivenOne) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(upper / "f", "x");
  content_.fail_writes = true;

  auto generated = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)}, {});
  ASSERT_FALSE(generated);
  EXPECT_EQ(generated.error().code(), Code::kResourceExhausted);
  EXPECT_TRUE(generated.error().message().starts_with("failed to write diff"));
  ASSERT_EQ(content_.aborted.size(), 1u);
  EXPECT_TRUE(content_.ingests.empty());

  auto given = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                {.ref = "my-ref"});
  ASSERT_FALSE(given);
  EXPECT_EQ(content_.aborted.size(), 1u);  // not aborted: the caller may resume or abort
  EXPECT_TRUE(content_.ingests.contains({kCtx.ns, "my-ref"}));
  EXPECT_TRUE(content_.blobs.empty());
}

TEST_F(WalkingDifferTest, CompareTruncatesAGivenRefFirst) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(upper / "f", "x");
  content_.ingests[{kCtx.ns, "resumed"}] = "garbage from an earlier attempt";
  auto layer = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                {.media_type = kTar, .ref = "resumed"});
  ASSERT_TRUE(layer) << layer.error().ToString();
  fs::path target = Dir("target");
  ASSERT_TRUE(differ_->Apply(kCtx, *layer, {Bind(target)}));
  EXPECT_EQ(ReadFile(target / "f"), "x");
}

TEST_F(WalkingDifferTest, CompareErrors) {
  fs::path lower = Dir("lower"), upper = Dir("upper");
  WriteFile(upper / "f", "x");
  auto bad_type = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                   {.media_type = "application/x-rar"});
  ASSERT_FALSE(bad_type);
  EXPECT_EQ(bad_type.error(), Unimplemented("unsupported diff media type: application/x-rar"));

  auto bad_mount = differ_->Compare(kCtx, {Bind(root_ / "missing", true)}, {Bind(upper, true)},
                                    {});
  ASSERT_FALSE(bad_mount);
  EXPECT_TRUE(bad_mount.error().message().starts_with("failed to mount lower"))
      << bad_mount.error().ToString();

  auto cancelled = differ_->Compare(kCtx, {Bind(lower, true)}, {Bind(upper, true)},
                                    {.cancelled = [] { return true; }});
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code(), Code::kCanceled);
  EXPECT_TRUE(content_.blobs.empty());
}

}  // namespace
}  // namespace berth::diff
