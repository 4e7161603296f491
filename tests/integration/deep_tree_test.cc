// Hostile tree shapes against a real berthd (issue 12 items 1, 2, 6): a small layer that builds
// a 20,000-level tree through symlinked directories and whites it out, and a snapshot with an
// 11,000-level tree diffed by `ctr snapshots diff`, both used to overflow a gRPC thread's stack
// (SIGSEGV); now each is an error and the daemon keeps serving. And temp mounts a killed
// daemon left under <root>/tmpmounts are gone after a restart.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "../common/deep_tree.h"
#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
namespace diffapi = containerd::services::diff::v1;

constexpr char kTarGz[] = "application/vnd.oci.image.layer.v1.tar+gzip";

// The layer of issue 12 item 1, written by Python's tarfile: 20 segments of 1,000 directory
// entries, each segment starting at a symlink to the bottom of the one before, so no tar name
// reaches PATH_MAX; then ".wh.top" removes all 20,000 levels.
constexpr char kDeepLayerPy[] = R"PY(
import gzip, io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind=tarfile.DIRTYPE, link=""):
        i = tarfile.TarInfo(name)
        i.type = kind
        i.mode = 0o755
        i.mtime = 1700000000
        i.linkname = link
        t.addfile(i, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    add("top")
    base = "top"
    for s in range(20):
        path = base
        for _ in range(1000):
            path += "/d"
            add(path)
        link = "s%d" % (s + 1)
        add(link, tarfile.SYMTYPE, path)
        base = link
    add(".wh.top", tarfile.REGTYPE)
sys.stdout.buffer.write(gzip.compress(buf.getvalue(), 6, mtime=0))
)PY";

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// A tmpfs mounted by the test (deep trees cost seconds per thousand levels to remove on the
// disk here; unmounting a tmpfs takes them all at once), detached on destruction.
struct ScopedTmpfs {
  std::string target;
  bool Mount(const std::string& dir) {
    fs::create_directories(dir);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "mode=0755") != 0) return false;
    target = dir;
    return true;
  }
  ScopedTmpfs() = default;
  ScopedTmpfs(const ScopedTmpfs&) = delete;
  ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;
  ~ScopedTmpfs() { Unmount(); }
  void Unmount() {
    if (!target.empty()) ::umount2(target.c_str(), MNT_DETACH);
    target.clear();
  }
};

class DeepTreeTest : public DaemonTest {
 protected:
  void TearDown() override {
    // The daemon first (it may hold the tmpfs), then the tmpfs, then the harness's cleanup.
    if (daemon_pid_ >= 0) {
      int code = StopDaemon();
      EXPECT_EQ(code, 0) << "berthd did not survive (exit " << code << ")";
    }
    UnmountUnder(tmp_ + "/");
    root_tmpfs_.Unmount();
    scratch_.Unmount();
    DaemonTest::TearDown();
  }

  // Restarts berthd with its root on a tmpfs.
  void RootOnTmpfs() {
    ASSERT_EQ(StopDaemon(), 0);
    ASSERT_TRUE(root_tmpfs_.Mount(root_)) << std::strerror(errno);
    ASSERT_TRUE(StartDaemon());
  }

  ScopedTmpfs root_tmpfs_, scratch_;
};

TEST_F(DeepTreeTest, LayerWhitingOutA20000LevelTreeIsAnErrorNotACrash) {
  RunResult py = berth::testing::Run({"/usr/bin/python3", "-c", kDeepLayerPy}, "", 300);
  ASSERT_EQ(py.exit_code, 0) << py.err;
  const std::string& blob = py.out;
  EXPECT_LT(blob.size(), 2u << 20) << "a small layer";
  const std::string digest = Sha256Digest(blob);
  RunResult in = CtrAt(socket_,
                       {"content", "ingest", "--expected-size", std::to_string(blob.size()),
                        "--expected-digest", digest, "deep-layer"},
                       "default", 120, blob);
  ASSERT_EQ(in.exit_code, 0) << in.err;
  ASSERT_EQ(Ctr({"content", "label", digest, "containerd.io/gc.root=test"}).exit_code, 0);

  ASSERT_TRUE(scratch_.Mount(tmp_ + "/target")) << std::strerror(errno);
  auto stub = diffapi::Diff::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", "default");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(600));
  diffapi::ApplyRequest req;
  req.mutable_diff()->set_media_type(kTarGz);
  req.mutable_diff()->set_digest(digest);
  req.mutable_diff()->set_size(static_cast<int64_t>(blob.size()));
  auto* m = req.add_mounts();
  m->set_type("bind");
  m->set_source(tmp_ + "/target");
  m->add_options("rbind");
  m->add_options("rw");
  diffapi::ApplyResponse resp;
  grpc::Status s = stub->Apply(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("deeper than"), std::string::npos) << s.error_message();
  ASSERT_TRUE(Alive(daemon_pid_)) << "berthd died";
  EXPECT_EQ(Ctr({"version"}).exit_code, 0);
}

TEST_F(DeepTreeTest, SnapshotsDiffOfAn11000LevelTreeIsAnErrorNotACrash) {
  ASSERT_NO_FATAL_FAILURE(RootOnTmpfs());
  ASSERT_EQ(Ctr({"snapshots", "prepare", "deep"}).exit_code, 0);
  {
    const std::string target = tmp_ + "/mnt";
    fs::create_directories(target);
    RunResult mounts = Ctr({"snapshots", "mounts", target, "deep"});
    ASSERT_EQ(mounts.exit_code, 0) << mounts.err;
    for (const std::string& line : Lines(mounts.out)) {
      RunResult r = berth::testing::Run(Cells(line));
      ASSERT_EQ(r.exit_code, 0) << line << ": " << r.err;
    }
    // What `mkdir -p a/a/...; mv` in a container makes: deeper than any path can name.
    ASSERT_NO_FATAL_FAILURE(MakeDeepTree(target, 11000, "a"));
    ASSERT_EQ(::umount2(target.c_str(), MNT_DETACH), 0);
  }
  ASSERT_EQ(Ctr({"snapshots", "commit", "deep-c", "deep"}).exit_code, 0);
  RunResult d = Ctr({"snapshots", "diff", "deep-c"});
  EXPECT_NE(d.exit_code, 0);
  EXPECT_NE(d.err.find("file name too long"), std::string::npos) << d.err;
  ASSERT_TRUE(Alive(daemon_pid_)) << "berthd died";
  EXPECT_EQ(Ctr({"version"}).exit_code, 0);
  EXPECT_TRUE(MountsUnder(root_ + "/tmpmounts/").empty()) << "temp mounts left";
  // Usage walks it (iteratively) and removal takes it.
  RunResult u = Ctr({"snapshots", "usage", "deep-c"});
  EXPECT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(Ctr({"snapshots", "rm", "deep-c"}).exit_code, 0);
}

// Issue 12 item 6: a Diff.Diff temp mount left by kill -9 (simulated: mounted where the
// daemon makes them) is unmounted and its directory removed at the next start, before serving.
TEST_F(DeepTreeTest, TempMountsLeftByAKilledDaemonAreSweptAtStart) {
  KillDaemon();
  const std::string base = root_ + "/tmpmounts";
  fs::create_directories(base + "/diff-upper-AbC123");
  fs::create_directories(base + "/diff-lower-XyZ789");
  fs::create_directories(tmp_ + "/src");
  ASSERT_EQ(::mount("tmpfs", (base + "/diff-upper-AbC123").c_str(), "tmpfs", 0, nullptr), 0);
  ASSERT_EQ(::mount((tmp_ + "/src").c_str(), (base + "/diff-lower-XyZ789").c_str(), nullptr,
                    MS_BIND, nullptr),
            0);
  ASSERT_EQ(MountsUnder(base + "/").size(), 2u);
  ASSERT_TRUE(StartDaemon());
  EXPECT_TRUE(MountsUnder(base + "/").empty()) << "still mounted after restart";
  EXPECT_FALSE(fs::exists(base + "/diff-upper-AbC123"));
  EXPECT_FALSE(fs::exists(base + "/diff-lower-XyZ789"));
  EXPECT_TRUE(fs::exists(tmp_ + "/src")) << "the bind source is untouched";
}

}  // namespace
}  // namespace berth::testing
