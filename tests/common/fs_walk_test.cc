// Tree walks over trees of any depth (issue 12 items 1, 2, 8): RemoveAllAt and WalkTreeAt are
// iterative (no stack per level), fd-bounded (no fd per level) and fd-relative (no path
// longer than PATH_MAX is ever built).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/fs.h"
#include "deep_tree.h"

namespace berth {
namespace {

using testing::CountOpenFds;
using testing::MakeDeepTree;
using testing::RunOnSmallStack;
using testing::ScopedFdLimit;

class FsWalkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = testing::DeepTreeTempDir("berth-fswalk");
    ASSERT_FALSE(tmp_.empty());
  }
  void TearDown() override {
    if (tmp_.empty()) return;
    // Our own remover: std::filesystem::remove_all cannot take these trees.
    EXPECT_TRUE(RemoveAll(tmp_).ok());
  }
  bool Exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
  }
  std::string tmp_;
};

// 30,000 levels (paths ~60 KB), a 64-fd limit and a 64 KiB stack: removal still completes.
TEST_F(FsWalkTest, RemoveAllTakesAnyDepthWithFewFdsAndLittleStack) {
  ASSERT_NO_FATAL_FAILURE(MakeDeepTree(tmp_, 30000));
  // Some symlinks on the way must not be followed: one pointing out of the tree.
  ::mkdir((tmp_ + "/outside").c_str(), 0755);
  ::close(::creat((tmp_ + "/outside/keep").c_str(), 0644));
  ASSERT_EQ(::symlink((tmp_ + "/outside").c_str(), (tmp_ + "/d/link").c_str()), 0);
  Status s;
  {
    ScopedFdLimit limit(kWalkOpenDirs + 32);
    RunOnSmallStack(64 << 10, [&] { s = RemoveAll(tmp_ + "/d"); });
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(Exists(tmp_ + "/d"));
  EXPECT_TRUE(Exists(tmp_ + "/outside/keep")) << "symlink followed";
  EXPECT_TRUE(RemoveAll(tmp_ + "/missing").ok()) << "missing is no error";
}

TEST_F(FsWalkTest, RemoveAllAtBoundsTheDepth) {
  ASSERT_NO_FATAL_FAILURE(MakeDeepTree(tmp_, 300));
  UniqueFd dir(::open(tmp_.c_str(), O_RDONLY | O_DIRECTORY));
  Status s = RemoveAllAt(dir.get(), "d", 100);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("deeper than"), std::string::npos) << s.ToString();
  // The same tree within the bound goes.
  EXPECT_TRUE(RemoveAllAt(dir.get(), "d", 301).ok());
  EXPECT_FALSE(Exists(tmp_ + "/d"));
}

TEST_F(FsWalkTest, WalkVisitsEveryLevelWithBoundedFds) {
  constexpr int kDepth = 5000;
  ASSERT_NO_FATAL_FAILURE(MakeDeepTree(tmp_, kDepth));
  UniqueFd root(::open(tmp_.c_str(), O_RDONLY | O_DIRECTORY));
  const int before = CountOpenFds();
  int entries = 0, leaves = 0, max_fds = 0;
  size_t deepest = 0;
  Status s;
  RunOnSmallStack(64 << 10, [&] {
    s = WalkTreeAt(
        root.get(),
        [&](const WalkEntry& e) -> Result<bool> {
          ++entries;
          deepest = std::max(deepest, e.depth);
          if (e.name == "f") {
            ++leaves;
            max_fds = CountOpenFds();
          }
          return true;
        },
        [&](int, const std::string&) {
          ++leaves;
          return Status::Ok();
        });
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(entries, kDepth + 1);  // every directory plus the file at the bottom
  EXPECT_EQ(deepest, size_t{kDepth + 1});
  EXPECT_EQ(leaves, kDepth + 1);   // the file, then a leave per directory
  EXPECT_LE(max_fds - before, static_cast<int>(kWalkOpenDirs) + 4) << "one fd per level";
  EXPECT_EQ(CountOpenFds(), before) << "fds leaked";

  s = WalkTreeAt(root.get(), [](const WalkEntry&) -> Result<bool> { return true; }, {}, 50);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
}

// A directory moved while the walk is below it: the walk stops instead of carrying on
// wherever ".." now leads.
TEST_F(FsWalkTest, WalkNoticesATreeMovedUnderIt) {
  ASSERT_NO_FATAL_FAILURE(MakeDeepTree(tmp_, kWalkOpenDirs + 200));
  ASSERT_EQ(::mkdir((tmp_ + "/elsewhere").c_str(), 0755), 0);
  UniqueFd root(::open(tmp_.c_str(), O_RDONLY | O_DIRECTORY));
  bool moved = false;
  Status s = WalkTreeAt(root.get(), [&](const WalkEntry& e) -> Result<bool> {
    if (!moved && e.depth == kWalkOpenDirs + 150) {
      // Move the directory at depth kWalkOpenDirs + 100 (whose fd the walk has closed)
      // under "elsewhere": reopening its old parent through ".." now finds "elsewhere".
      std::string p = tmp_;
      for (size_t i = 0; i < kWalkOpenDirs + 99; ++i) p += "/d";
      UniqueFd parent(::open(p.c_str(), O_RDONLY | O_DIRECTORY));
      EXPECT_TRUE(parent.valid()) << std::strerror(errno);
      EXPECT_EQ(::renameat(parent.get(), "d", root.get(), "elsewhere/d"), 0)
          << std::strerror(errno);
      moved = true;
    }
    return true;
  });
  ASSERT_TRUE(moved);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
}

}  // namespace
}  // namespace berth
