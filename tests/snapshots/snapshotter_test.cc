// Conformance suite for snapshots::Snapshotter (metadata::SnapshotStore) over both backends,
// plus exact mount data and a real overlay mount (root only).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "../common/deep_tree.h"
#include "common/fs.h"
#include "metadata/db.h"
#include "metadata/gc.h"
#include "snapshots/fs_util.h"
#include "metadata/snapshot_store.h"
#include "snapshots/native/native.h"
#include "snapshots/overlay/overlay.h"

namespace berth::snapshots {
namespace {

namespace stdfs = std::filesystem;
const Ctx kCtx{"ns", ""};

class ScopedMount {
 public:
  explicit ScopedMount(std::string target) : target_(std::move(target)) {}
  ~ScopedMount() { ::umount2(target_.c_str(), MNT_DETACH); }

 private:
  std::string target_;
};

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path) << data;
}
std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class SnapshotterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-snap-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto db = metadata::Db::Open(dir_ + "/meta.db");
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    if (GetParam() == "overlayfs") {
      auto b = OverlayBackend::Open(dir_ + "/snapshots/overlayfs", /*index_off=*/true);
      ASSERT_TRUE(b);
      backend_ = std::move(*b);
    } else {
      auto b = NativeBackend::Open(dir_ + "/snapshots/native");
      ASSERT_TRUE(b);
      backend_ = std::move(*b);
    }
    sn_ = std::make_unique<metadata::SnapshotStore>(*db_, *backend_);
  }
  void TearDown() override {
    sn_.reset();
    backend_.reset();
    db_.reset();
    stdfs::remove_all(dir_);
  }
  bool overlay() const { return GetParam() == "overlayfs"; }
  std::string Base() const { return dir_ + "/snapshots/" + GetParam() + "/snapshots/"; }
  // The writable directory of an Active snapshot (its bind/upper source).
  std::string DataDir(const std::vector<Mount>& m) {
    if (m[0].type == "bind") return m[0].source;
    for (const auto& o : m[0].options) {
      if (o.starts_with("upperdir=")) return o.substr(9);
    }
    return "";
  }
  // Prepare + write files + commit.
  void Layer(const std::string& name, const std::string& parent,
             const std::map<std::string, std::string>& files) {
    auto m = sn_->Prepare(kCtx, "tmp-" + name, parent, {});
    ASSERT_TRUE(m) << m.error().ToString();
    std::string d = DataDir(*m);
    if (!overlay() || parent.empty()) {
      ASSERT_EQ((*m)[0].type, "bind");
    }
    for (const auto& [f, c] : files) WriteFile(d + "/" + f, c);
    ASSERT_TRUE(sn_->Commit(kCtx, name, "tmp-" + name, {}).ok());
  }

  std::string dir_;
  std::unique_ptr<metadata::Db> db_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<metadata::SnapshotStore> sn_;
};

TEST_P(SnapshotterTest, PrepareCommitStatChain) {
  Layer("base", "", {{"a", "1"}});
  Layer("top", "base", {{"b", "2"}});
  auto info = sn_->Stat(kCtx, "top");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->parent, "base");
  EXPECT_EQ(sn_->Stat(kCtx, "tmp-top").error().code(), Code::kNotFound);
  auto m = sn_->Prepare(kCtx, "work", "top", {{"x", "y"}});
  ASSERT_TRUE(m);
  auto st = sn_->Stat(kCtx, "work");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->kind, Kind::kActive);
  EXPECT_EQ(st->labels.at("x"), "y");
  if (!overlay()) {
    // Native copies the parent chain.
    EXPECT_EQ(ReadAll((*m)[0].source + "/a"), "1");
    EXPECT_EQ(ReadAll((*m)[0].source + "/b"), "2");
  }
}

TEST_P(SnapshotterTest, MountsAreExact) {
  Layer("l1", "", {});
  Layer("l2", "l1", {});
  auto id_of = [&](const std::string&) { return std::string(); };
  (void)id_of;
  // Ids are allocated 1, 2 (l1, l2), then 3...
  auto a = sn_->Prepare(kCtx, "a", "", {});
  auto v0 = sn_->View(kCtx, "v0", "", {});
  auto b = sn_->Prepare(kCtx, "b", "l2", {});
  auto v1 = sn_->View(kCtx, "v1", "l1", {});
  auto v2 = sn_->View(kCtx, "v2", "l2", {});
  ASSERT_TRUE(a && v0 && b && v1 && v2);
  std::string base = Base();
  if (overlay()) {
    EXPECT_EQ(*a, (std::vector<Mount>{{"bind", base + "3/fs", {"rw", "rbind"}}}));
    EXPECT_EQ(*v0, (std::vector<Mount>{{"bind", base + "4/fs", {"ro", "rbind"}}}));
    EXPECT_EQ(*b, (std::vector<Mount>{{"overlay", "overlay",
                                       {"index=off", "workdir=" + base + "5/work",
                                        "upperdir=" + base + "5/fs",
                                        "lowerdir=" + base + "2/fs:" + base + "1/fs"}}}));
    EXPECT_EQ(*v1, (std::vector<Mount>{{"bind", base + "1/fs", {"ro", "rbind"}}}));
    EXPECT_EQ(*v2, (std::vector<Mount>{{"overlay", "overlay",
                                        {"index=off", "lowerdir=" + base + "2/fs:" + base +
                                                          "1/fs"}}}));
    EXPECT_FALSE(stdfs::exists(base + "4/work"));
    EXPECT_TRUE(stdfs::exists(base + "5/work"));
  } else {
    EXPECT_EQ(*a, (std::vector<Mount>{{"bind", base + "3", {"rbind", "rw"}}}));
    EXPECT_EQ(*v0, (std::vector<Mount>{{"bind", base + "4", {"rbind", "rw"}}}));
    EXPECT_EQ(*b, (std::vector<Mount>{{"bind", base + "5", {"rbind", "rw"}}}));
    EXPECT_EQ(*v1, (std::vector<Mount>{{"bind", base + "1", {"rbind", "ro"}}}));
    EXPECT_EQ(*v2, (std::vector<Mount>{{"bind", base + "2", {"rbind", "ro"}}}));
  }
  auto again = sn_->Mounts(kCtx, "b");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *b);
  EXPECT_EQ(sn_->Mounts(kCtx, "l1").error().code(), Code::kFailedPrecondition);
}

TEST_P(SnapshotterTest, Errors) {
  Layer("c", "", {});
  ASSERT_TRUE(sn_->Prepare(kCtx, "a", "", {}));
  EXPECT_EQ(sn_->Prepare(kCtx, "a", "", {}).error().code(), Code::kAlreadyExists);
  EXPECT_EQ(sn_->Prepare(kCtx, "x", "missing", {}).error().code(), Code::kNotFound);
  EXPECT_EQ(sn_->Prepare(kCtx, "x", "a", {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(sn_->Prepare(kCtx, "", "", {}).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(sn_->Commit(kCtx, "c", "a", {}).code(), Code::kAlreadyExists);
  EXPECT_EQ(sn_->Commit(kCtx, "d", "c", {}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(sn_->Commit(kCtx, "d", "nope", {}).code(), Code::kNotFound);
  ASSERT_TRUE(sn_->View(kCtx, "v", "c", {}));
  EXPECT_EQ(sn_->Commit(kCtx, "d", "v", {}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(sn_->Prepare(kCtx, "t", "", {{"containerd.io/snapshot.ref", "c"}}).error().code(),
            Code::kAlreadyExists);
  EXPECT_EQ(sn_->Remove(kCtx, "nope").code(), Code::kNotFound);
  EXPECT_EQ(sn_->Stat(kCtx, "nope").error().code(), Code::kNotFound);
  EXPECT_EQ(sn_->Prepare({"ns", "no-such-lease"}, "z", "", {}).error().code(), Code::kNotFound);
  EXPECT_EQ(sn_->Stat(kCtx, "z").error().code(), Code::kNotFound);
}

TEST_P(SnapshotterTest, RemoveRefusesWithChildrenAndDeletesData) {
  Layer("p", "", {{"f", "x"}});
  auto m = sn_->Prepare(kCtx, "child", "p", {});
  ASSERT_TRUE(m);
  EXPECT_EQ(sn_->Remove(kCtx, "p").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(sn_->Remove(kCtx, "child").ok());
  ASSERT_TRUE(sn_->Remove(kCtx, "p").ok());
  auto ids = backend_->List();
  ASSERT_TRUE(ids);
  EXPECT_TRUE(ids->empty());
}

TEST_P(SnapshotterTest, UsageActiveMeasuredCommittedStored) {
  auto m = sn_->Prepare(kCtx, "a", "", {});
  ASSERT_TRUE(m);
  WriteFile(DataDir(*m) + "/big", std::string(64 * 1024, 'x'));
  auto u = sn_->Usage(kCtx, "a");
  ASSERT_TRUE(u);
  EXPECT_GE(u->size, 64 * 1024);
  EXPECT_EQ(u->inodes, 2);
  ASSERT_TRUE(sn_->Commit(kCtx, "c", "a", {{"k", "v"}}).ok());
  auto cu = sn_->Usage(kCtx, "c");
  ASSERT_TRUE(cu);
  EXPECT_EQ(cu->size, u->size);
  EXPECT_EQ(cu->inodes, 2);
  EXPECT_EQ(sn_->Stat(kCtx, "c")->labels, (Labels{{"k", "v"}}));
}

TEST_P(SnapshotterTest, LabelsWalkFiltersAndNamespaces) {
  Layer("base", "", {});
  ASSERT_TRUE(sn_->Prepare(kCtx, "a", "base", {{"x", "1"}}));
  ASSERT_TRUE(sn_->View(kCtx, "v", "base", {}));
  Info in;
  in.name = "a";
  in.labels = {{"y", "2"}};
  auto up = sn_->Update(kCtx, in, {"labels.y"});
  ASSERT_TRUE(up);
  EXPECT_EQ(up->labels, (Labels{{"x", "1"}, {"y", "2"}}));
  EXPECT_EQ(sn_->Update(kCtx, in, {"parent"}).error().code(), Code::kInvalidArgument);
  auto names = [&](std::vector<std::string> f, const Ctx& c = kCtx) {
    std::vector<std::string> out;
    EXPECT_TRUE(sn_->Walk(c, [&](const Info& i) {
                     out.push_back(i.name);
                     return Status::Ok();
                   }, f).ok());
    return out;
  };
  EXPECT_EQ(names({}), (std::vector<std::string>{"a", "base", "v"}));
  EXPECT_EQ(names({"kind==committed"}), (std::vector<std::string>{"base"}));
  EXPECT_EQ(names({"kind==view", "labels.y==2"}), (std::vector<std::string>{"a", "v"}));
  EXPECT_EQ(names({"parent==base"}), (std::vector<std::string>{"a", "v"}));
  EXPECT_EQ(names({"name==base"}), (std::vector<std::string>{"base"}));
  // Namespaces are isolated: same key elsewhere, different data.
  Ctx other{"other", ""};
  EXPECT_TRUE(names({}, other).empty());
  auto o = sn_->Prepare(other, "a", "", {});
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_EQ(sn_->Prepare(other, "x", "base", {}).error().code(), Code::kNotFound);
  EXPECT_NE(*o, *sn_->Mounts(kCtx, "a"));
}

TEST_P(SnapshotterTest, CleanupRemovesUnreferencedData) {
  Layer("keep", "", {});
  ASSERT_TRUE(backend_->Create(99, Kind::kActive, {}).ok());
  ASSERT_TRUE(sn_->Cleanup(kCtx).ok());
  EXPECT_EQ(*backend_->List(), (std::vector<int64_t>{1}));
}

// A removal that fails part way leaves "rm-<id>" behind (berthd hit EMFILE on a ~20,000-level
// tree; here a mount inside the doomed tree makes its rmdir fail with EBUSY). Every GC pass
// retries it, PendingRemovals counts it, and once removal can succeed the next pass removes it.
TEST_P(SnapshotterTest, GcRetriesLeftoverRemovals) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  metadata::GarbageCollector gc(*db_);
  gc.AddSnapshotBackend(*backend_);
  auto m = sn_->Prepare(kCtx, "doomed", "", {});
  ASSERT_TRUE(m) << m.error().ToString();
  std::string pin = DataDir(*m) + "/pin";
  ASSERT_EQ(::mkdir(pin.c_str(), 0700), 0);
  ASSERT_EQ(::mount("tmpfs", pin.c_str(), "tmpfs", 0, nullptr), 0) << std::strerror(errno);
  std::string moved = Base() + "rm-1" + pin.substr((Base() + "1").size());
  struct Unmount {  // wherever the mount is by then
    std::vector<std::string> paths;
    ~Unmount() {
      for (const auto& p : paths) ::umount2(p.c_str(), MNT_DETACH);
    }
  } unmount{{pin, moved}};
  EXPECT_EQ(*backend_->PendingRemovals(), 0);

  // The removal fails (logged; the row is gone) and leaves rm-1.
  ASSERT_TRUE(sn_->Remove(kCtx, "doomed").ok());
  ASSERT_TRUE(stdfs::exists(Base() + "rm-1"));
  EXPECT_EQ(*backend_->PendingRemovals(), 1);
  auto pass = gc.Collect();
  ASSERT_TRUE(pass) << pass.error().ToString();
  EXPECT_EQ(pass->backend_errors, 0);
  EXPECT_TRUE(stdfs::exists(Base() + "rm-1"));
  EXPECT_EQ(*backend_->PendingRemovals(), 1);

  // Removable now: the next pass removes it.
  ASSERT_EQ(::umount2(moved.c_str(), 0), 0) << std::strerror(errno);
  pass = gc.Collect();
  ASSERT_TRUE(pass) << pass.error().ToString();
  EXPECT_EQ(pass->backend_removed, 1);
  EXPECT_FALSE(stdfs::exists(Base() + "rm-1"));
  EXPECT_EQ(*backend_->PendingRemovals(), 0);
}

TEST_P(SnapshotterTest, SweepRemovesUnkeptIdsAndLeavesOthersAlone) {
  Layer("keep", "", {});
  ASSERT_TRUE(backend_->Create(7, Kind::kActive, {}).ok());
  ASSERT_TRUE(backend_->Create(8, Kind::kActive, {}).ok());
  ASSERT_TRUE(stdfs::create_directory(Base() + "rm--9"));   // a failed Create's leftover
  ASSERT_TRUE(stdfs::create_directory(Base() + "rm-x"));    // not ours: left alone
  ASSERT_TRUE(stdfs::create_directory(Base() + "new-abc"));  // a Create's staging dir
  EXPECT_EQ(*backend_->PendingRemovals(), 1);
  auto removed = backend_->Sweep({1, 8});
  ASSERT_TRUE(removed) << removed.error().ToString();
  EXPECT_EQ(*removed, 2);  // 7 and rm--9
  EXPECT_EQ(*backend_->List(), (std::vector<int64_t>{8, 1}));
  EXPECT_FALSE(stdfs::exists(Base() + "rm--9"));
  EXPECT_TRUE(stdfs::exists(Base() + "rm-x"));
  EXPECT_TRUE(stdfs::exists(Base() + "new-abc"));
  EXPECT_EQ(*backend_->PendingRemovals(), 0);
}

TEST_P(SnapshotterTest, RealMountWorks) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  Layer("l1", "", {{"a", "from-l1"}, {"b", "from-l1"}});
  Layer("l2", "l1", {{"b", "from-l2"}});
  auto m = sn_->Prepare(kCtx, "rw", "l2", {});
  ASSERT_TRUE(m);
  std::string target = dir_ + "/mnt";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  const Mount& mt = (*m)[0];
  std::string data;
  unsigned long flags = 0;
  for (const auto& o : mt.options) {
    if (o == "rbind") {
      flags |= MS_BIND | MS_REC;
    } else if (o == "ro") {
      flags |= MS_RDONLY;
    } else if (o != "rw") {
      data += (data.empty() ? "" : ",") + o;
    }
  }
  if (::mount(mt.source.c_str(), target.c_str(), mt.type.c_str(), flags, data.c_str()) != 0) {
    int err = errno;
    if (overlay() && (err == ENODEV || err == EINVAL || err == EPERM)) {
      GTEST_SKIP() << "overlay mount not available: " << strerror(err);
    }
    FAIL() << "mount: " << strerror(err);
  }
  {
    ScopedMount guard(target);
    EXPECT_EQ(ReadAll(target + "/a"), "from-l1");
    EXPECT_EQ(ReadAll(target + "/b"), "from-l2");
    WriteFile(target + "/c", "new");
  }
  EXPECT_EQ(ReadAll(DataDir(*m) + "/c"), "new");
}

INSTANTIATE_TEST_SUITE_P(Both, SnapshotterTest, ::testing::Values("overlayfs", "native"));

}  // namespace
}  // namespace berth::snapshots

namespace berth::snapshots {
namespace {

// Issue 12 items 2 and 8: a container's snapshot can be deeper than any path can name. Usage
// walks it and removal takes it, with a few fds (a 20,000-level tree used to end in EMFILE or
// ENAMETOOLONG and stay behind as rm-<id>).
TEST(DeepSnapshotTree, UsageAndRemovalTakeAnyDepth) {
  const std::string tmp = berth::testing::DeepTreeTempDir("berth-deep-snap");
  ASSERT_FALSE(tmp.empty());
  const std::string dir = tmp + "/7";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  constexpr int kDepth = 20000;
  ASSERT_NO_FATAL_FAILURE(berth::testing::MakeDeepTree(dir, kDepth));
  {
    berth::testing::ScopedFdLimit limit(256);
    Result<Usage> u = std::unexpected(Internal("not run"));
    berth::testing::RunOnSmallStack(128 << 10, [&] { u = DiskUsage(dir); });
    ASSERT_TRUE(u.has_value()) << u.error().ToString();
    EXPECT_EQ(u->inodes, kDepth + 2);  // the root, every level, the file
    EXPECT_GT(u->size, 0);
    Status s;
    berth::testing::RunOnSmallStack(128 << 10, [&] { s = RenameAndRemove(dir, tmp, 7); });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "nothing left as rm-7";
  EXPECT_TRUE(RemoveAll(tmp).ok());
}

}  // namespace
}  // namespace berth::snapshots
