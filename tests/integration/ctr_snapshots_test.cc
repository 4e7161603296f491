// `ctr snapshots ...` with the real ctr against berthd, for both snapshotters, and
// `ctr images check` now that a snapshotter answers.
#include <gtest/gtest.h>
#include <unistd.h>

#include "harness.h"

namespace berth::testing {
namespace {

class CtrSnapshotsTest : public DaemonTest, public ::testing::WithParamInterface<std::string> {
 protected:
  RunResult Snap(std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", GetParam()});
    return Ctr(args);
  }
};

TEST_P(CtrSnapshotsTest, Lifecycle) {
  RunResult r = Snap({"prepare", "k1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Snap({"prepare", "k1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = Snap({"commit", "c1", "k1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Snap({"prepare", "k2", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Snap({"view", "v1", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = Snap({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("KEY"), std::string::npos);
  for (const char* want : {"c1", "k2", "v1", "Committed", "Active", "View"}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  }
  EXPECT_EQ(r.out.find("k1 "), std::string::npos) << r.out;

  r = Snap({"tree"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("c1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\\_ k2"), std::string::npos) << r.out;

  r = Snap({"info", "k2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"Parent\": \"c1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"Kind\": \"Active\""), std::string::npos) << r.out;

  r = Snap({"usage"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("INODES"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c1"), std::string::npos) << r.out;

  r = Snap({"mounts", "/mnt/target", "k2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string snapdir = root_ + "/snapshots/" + GetParam() + "/snapshots/";
  if (GetParam() == "overlayfs") {
    EXPECT_NE(r.out.find("mount -t overlay overlay /mnt/target -o "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lowerdir=" + snapdir + "1/fs"), std::string::npos) << r.out;
  } else {
    EXPECT_NE(r.out.find("mount -t bind " + snapdir + "2 /mnt/target -o rbind,rw"),
              std::string::npos)
        << r.out;
  }
  r = Snap({"mounts", "/mnt/target", "c1"});
  EXPECT_NE(r.exit_code, 0);

  r = Snap({"label", "c1", "foo=bar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Snap({"info", "c1"});
  EXPECT_NE(r.out.find("\"foo\": \"bar\""), std::string::npos) << r.out;

  r = Snap({"rm", "c1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("failed precondition"), std::string::npos) << r.err;
  // Removing k2 triggers GC, which (as in containerd) collects what no lease, image or
  // gc.root label holds: the view v1. ctr's prepare and commit label gc.root, so c1 stays.
  r = Snap({"rm", "k2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < 50; ++i) {
    r = Snap({"ls"});
    if (r.out.find("v1") == std::string::npos) break;
    usleep(100000);
  }
  EXPECT_EQ(r.out.find("v1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c1"), std::string::npos) << r.out;
  r = Snap({"rm", "c1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Snap({"ls"});
  EXPECT_EQ(r.out.find("c1"), std::string::npos) << r.out;
}

TEST_P(CtrSnapshotsTest, UnknownSnapshotterIsInvalidArgument) {
  RunResult r = Ctr({"snapshots", "--snapshotter", "zfs", "ls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("snapshotter not loaded: zfs"), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(Both, CtrSnapshotsTest, ::testing::Values("overlayfs", "native"));

class CtrImagesCheckTest : public DaemonTest {};

TEST_F(CtrImagesCheckTest, ImportedWithoutUnpackIsCompleteNotUnpacked) {
  OciImage img = BuildOciImage(tmp_ + "/img", "example.com/check/one:latest");
  RunResult r = Ctr({"images", "import", "--no-unpack", img.tar});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = Ctr({"images", "check"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("complete"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("false"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace berth::testing
