// Mount helpers: containerd's read-only conversion, and TempMount cleaning up after itself.
#include "common/mount.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace berth {
namespace {

namespace fs = std::filesystem;

TEST(ReadonlyMounts, OverlayFoldsUpperIntoLowerAndDropsWorkdir) {
  auto out = ReadonlyMounts(
      {{"overlay",
        "overlay",
        {"index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs:/s/0/fs"}}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].options,
            (std::vector<std::string>{"index=off", "lowerdir=/s/2/fs:/s/1/fs:/s/0/fs"}));
  // Already read-only (a view): unchanged.
  auto view = ReadonlyMounts({{"overlay", "overlay", {"lowerdir=/a:/b"}}});
  EXPECT_EQ(view[0].options, (std::vector<std::string>{"lowerdir=/a:/b"}));
}

TEST(ReadonlyMounts, OthersGetRoInsteadOfRw) {
  auto out = ReadonlyMounts({{"bind", "/x", {"rw", "rbind"}}, {"bind", "/y", {"ro", "rbind"}}});
  EXPECT_EQ(out[0].options, (std::vector<std::string>{"rbind", "ro"}));
  EXPECT_EQ(out[1].options, (std::vector<std::string>{"rbind", "ro"}));
}

TEST(MountOptions, Lookup) {
  Mount m{"overlay", "overlay", {"ro", "upperdir=/u", "lowerdir=/l"}};
  EXPECT_TRUE(HasMountOption(m, "ro"));
  EXPECT_FALSE(HasMountOption(m, "rw"));
  EXPECT_EQ(MountOptionValue(m, "upperdir"), "/u");
  EXPECT_EQ(MountOptionValue(m, "workdir"), "");
}

class TempMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
    char tmpl[] = "/tmp/berth-mount-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    fs::create_directory(tmp_ + "/src");
    std::ofstream(tmp_ + "/src/f") << "data";
  }
  void TearDown() override {
    if (tmp_.empty()) return;
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
  std::string tmp_;
};

TEST_F(TempMountTest, ReadOnlyBindIsReadOnlyAndGoneAfterwards) {
  std::string dir;
  {
    auto t = TempMount::Make(tmp_ + "/mnts",
                             std::vector<Mount>{{"bind", tmp_ + "/src", {"rbind", "ro"}}});
    ASSERT_TRUE(t.has_value()) << t.error().ToString();
    dir = (*t)->dir();
    EXPECT_TRUE(fs::exists(dir + "/f"));
    EXPECT_NE(::access((dir + "/f").c_str(), W_OK), 0);
    EXPECT_EQ(errno, EROFS);
  }
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(fs::exists(tmp_ + "/src/f")) << "source untouched";
}

TEST_F(TempMountTest, FailedMountLeavesNothing) {
  auto t =
      TempMount::Make(tmp_ + "/mnts", std::vector<Mount>{{"bind", tmp_ + "/missing", {"rbind"}}});
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kNotFound);
  EXPECT_TRUE(fs::is_empty(tmp_ + "/mnts"));
}

TEST_F(TempMountTest, NoMountsIsAnEmptyDirectory) {
  auto t = TempMount::Make(tmp_ + "/mnts", std::vector<Mount>{});
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(fs::is_empty((*t)->dir()));
}

// More lowerdirs than fit in a page of mount data (containerd compacts them the same way):
// the mount still works and our working directory is untouched.
TEST_F(TempMountTest, OverlayWithOptionsLongerThanAPage) {
  std::string lowers;
  for (int i = 0; i < 120; ++i) {
    std::string d = tmp_ + "/snapshots/layer-" + std::to_string(i) + "-padding-padding/fs";
    fs::create_directories(d);
    std::ofstream(d + "/f" + std::to_string(i)) << i;
    if (!lowers.empty()) lowers += ':';
    lowers += d;
  }
  ASSERT_GT(lowers.size(), 4096u);
  auto cwd_before = fs::current_path();
  auto t = TempMount::Make(tmp_ + "/mnts",
                           std::vector<Mount>{{"overlay", "overlay", {"lowerdir=" + lowers}}});
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(fs::current_path(), cwd_before);
  for (int i = 0; i < 120; ++i) {
    EXPECT_TRUE(fs::exists((*t)->dir() + "/f" + std::to_string(i))) << i;
  }
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

bool MountedAt(const std::string& dir) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    if (line.find(" " + dir + " ") != std::string::npos) return true;
  }
  return false;
}

// Issue 12 item 6: what a killed daemon left under <root>/tmpmounts is unmounted (nested
// mounts first) and its directories removed; a directory that is not empty once unmounted
// is kept (rmdir only: a sweep never deletes data).
TEST_F(TempMountTest, CleanupTempMountsUnmountsAndRemovesWhatACrashLeft) {
  const std::string base = tmp_ + "/tmpmounts";
  fs::create_directories(base + "/diff-upper-AAAAAA");
  fs::create_directories(base + "/diff-lower-BBBBBB");
  fs::create_directories(base + "/apply-CCCCCC");  // made, never mounted
  fs::create_directories(base + "/stray");
  std::ofstream(base + "/stray/data") << "kept";
  ASSERT_EQ(::mount(nullptr, (base + "/diff-upper-AAAAAA").c_str(), "tmpfs", 0, "size=1m"), 0);
  fs::create_directories(base + "/diff-upper-AAAAAA/inner");
  ASSERT_EQ(::mount((tmp_ + "/src").c_str(), (base + "/diff-upper-AAAAAA/inner").c_str(), nullptr,
                    MS_BIND, nullptr),
            0);
  ASSERT_EQ(::mount((tmp_ + "/src").c_str(), (base + "/diff-lower-BBBBBB").c_str(), nullptr,
                    MS_BIND | MS_RDONLY, nullptr),
            0);

  auto n = CleanupTempMounts(base);
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 3);
  EXPECT_FALSE(MountedAt(base + "/diff-upper-AAAAAA"));
  EXPECT_FALSE(MountedAt(base + "/diff-upper-AAAAAA/inner"));
  EXPECT_FALSE(MountedAt(base + "/diff-lower-BBBBBB"));
  EXPECT_FALSE(fs::exists(base + "/diff-upper-AAAAAA"));
  EXPECT_FALSE(fs::exists(base + "/diff-lower-BBBBBB"));
  EXPECT_FALSE(fs::exists(base + "/apply-CCCCCC"));
  EXPECT_TRUE(fs::exists(base + "/stray/data")) << "never removes content";
  EXPECT_TRUE(fs::exists(tmp_ + "/src/f")) << "the bind source is untouched";

  // Nothing there (or no base at all): no error.
  EXPECT_EQ(CleanupTempMounts(base).value_or(-1), 0);
  EXPECT_EQ(CleanupTempMounts(tmp_ + "/none").value_or(-1), 0);
}

}  // namespace
}  // namespace berth
