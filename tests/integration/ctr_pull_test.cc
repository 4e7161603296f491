// `ctr images pull` end to end: registry traffic in ctr, blobs into berthd's content store,
// then unpack through Snapshots.Prepare → Diff.Apply → Snapshots.Commit (compat §3.1 step 5).
// The image is built offline with umoci (busybox-static plus files, a whiteout layer and an
// opaque-directory layer) and pushed to a local docker-registry with skopeo.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <tuple>
#include <fstream>
#include <set>
#include <sstream>

#include <grpcpp/grpcpp.h>

#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CtrPullTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFailure() || IsSkipped()) return;
    for (const char* bin : {"docker-registry", "skopeo", "umoci"}) {
      if (::berth::testing::Run({"sh", "-c", std::string("command -v ") + bin}).exit_code != 0) {
        GTEST_SKIP() << "needs " << bin << " (scripts/install-deps.sh)";
      }
    }
    if (::access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "needs busybox-static";
    BuildAndPush();
  }
  void TearDown() override {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    registry_.Stop();
    DaemonTest::TearDown();
  }

  void BuildAndPush() {
    std::string layout = tmp_ + "/oci";
    std::string files = tmp_ + "/files";
    fs::create_directories(files + "/etc");
    fs::create_directories(files + "/data/old");
    fs::create_directories(files + "/newdata");
    std::ofstream(files + "/etc/hello.txt") << "hello from a pulled layer\n";
    std::ofstream(files + "/etc/gone.txt") << "deleted by layer 2\n";
    std::ofstream(files + "/data/old/a") << "hidden by the opaque layer\n";
    std::ofstream(files + "/newdata/b") << "the opaque layer's file\n";
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"umoci", "init", "--layout", layout},
             {"umoci", "new", "--image", layout + ":1"},
             {"umoci", "insert", "--image", layout + ":1", "/bin/busybox", "/bin/busybox"},
             {"umoci", "insert", "--image", layout + ":1", files + "/etc", "/etc"},
             {"umoci", "insert", "--image", layout + ":1", files + "/data", "/data"},
             {"umoci", "insert", "--image", layout + ":1", "--whiteout", "/etc/gone.txt"},
             {"umoci", "insert", "--image", layout + ":1", "--opaque", files + "/newdata", "/data"},
             {"umoci", "config", "--image", layout + ":1", "--config.cmd", "/bin/busybox"}}) {
      RunResult r = ::berth::testing::Run(cmd, "", 120);
      ASSERT_EQ(r.exit_code, 0) << cmd[0] << " " << cmd[1] << ": " << r.err;
    }
    ASSERT_TRUE(registry_.Start(tmp_ + "/registry"));
    ref_ = registry_.addr() + "/test/layers:1";
    zstd_ref_ = registry_.addr() + "/test/layers:zstd";
    RunResult r = ::berth::testing::Run({"skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                       "oci:" + layout + ":1", "docker://" + ref_},
                      "", 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // skopeo keeps compressed blobs as they are, and its blob-info cache would substitute
    // the gzip layers it just pushed: decompress into a dir, then push with zstd in a private
    // mount namespace whose cache dir is an empty tmpfs (unmounted before the shell exits).
    r = ::berth::testing::Run({"skopeo", "--insecure-policy", "copy", "--quiet", "--dest-decompress",
                               "oci:" + layout + ":1", "dir:" + tmp_ + "/plain"},
                              "", 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::string push = "skopeo --insecure-policy copy --quiet --dest-tls-verify=false "
                       "--dest-compress-format zstd dir:" + tmp_ + "/plain docker://" + zstd_ref_;
    r = ::berth::testing::Run(
        {"unshare", "-m", "--propagation", "private", "sh", "-c",
         "mkdir -p /var/lib/containers/cache && "
         "mount -t tmpfs tmpfs /var/lib/containers/cache && " + push +
             "; rc=$?; umount /var/lib/containers/cache; exit $rc"},
        "", 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void Pull(const std::string& ref, const std::string& snapshotter) {
    RunResult r = Ctr({"images", "pull", "--plain-http", "--snapshotter", snapshotter, ref});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err << "\ndaemon log:\n" << ReadText(log_path_);
    RunResult c = Ctr({"images", "check"});
    ASSERT_EQ(c.exit_code, 0) << c.err;
    bool found = false;
    for (const auto& line : Lines(c.out)) {
      auto cells = Cells(line);
      if (cells.empty() || cells[0] != ref) continue;
      found = true;
      EXPECT_NE(line.find("complete"), std::string::npos) << c.out;
      // The UNPACKED column is the last; ctr checks it against the given snapshotter.
      RunResult u = Ctr({"images", "check", "--snapshotter", snapshotter, "name==" + ref});
      ASSERT_EQ(u.exit_code, 0) << u.err;
      auto ul = Lines(u.out);
      ASSERT_EQ(ul.size(), 2u) << u.out;
      EXPECT_EQ(Cells(ul[1]).back(), "true") << u.out;
    }
    EXPECT_TRUE(found) << c.out;
  }

  // The unpacked tree as the image describes it.
  void ExpectTree(const std::string& dir) {
    struct stat host, got;
    ASSERT_EQ(::stat("/bin/busybox", &host), 0);
    ASSERT_EQ(::stat((dir + "/bin/busybox").c_str(), &got), 0) << dir;
    EXPECT_EQ(got.st_size, host.st_size);
    EXPECT_TRUE(got.st_mode & S_IXUSR);
    EXPECT_EQ(ReadText(dir + "/etc/hello.txt"), "hello from a pulled layer\n");
    EXPECT_FALSE(fs::exists(dir + "/etc/gone.txt")) << "whiteout not honoured";
    EXPECT_FALSE(fs::exists(dir + "/data/old")) << "opaque directory not honoured";
    EXPECT_EQ(ReadText(dir + "/data/b"), "the opaque layer's file\n");
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      EXPECT_EQ(e.path().filename().string().rfind(".wh.", 0), std::string::npos) << e.path();
    }
  }

  // The committed snapshot nobody names as parent: the top of the (single) image's chain.
  std::string TopSnapshot(const std::string& snapshotter) {
    RunResult s = Ctr({"snapshots", "--snapshotter", snapshotter, "ls"});
    EXPECT_EQ(s.exit_code, 0) << s.err;
    std::set<std::string> names, parents;
    auto lines = Lines(s.out);
    for (size_t i = 1; i < lines.size(); ++i) {
      auto c = Cells(lines[i]);
      if (c.size() >= 2 && c.back() == "Committed") {
        names.insert(c[0]);
        if (c.size() == 3) parents.insert(c[1]);
      }
    }
    std::string top;
    for (const auto& n : names) {
      if (!parents.contains(n)) top = n;
    }
    EXPECT_FALSE(top.empty()) << s.out;
    return top;
  }

  void MountImageAndCompare(const std::string& ref, const std::string& snapshotter) {
    std::string target = tmp_ + "/mnt-" + snapshotter;
    fs::create_directories(target);
    if (snapshotter != "overlayfs") {
      // ctr 1.6's `images mount` reads --snapshotter as a global flag, so it always uses
      // overlayfs (as with containerd); `ctr snapshots --snapshotter X` honours it.
      std::string top = TopSnapshot(snapshotter);
      RunResult v = Ctr({"snapshots", "--snapshotter", snapshotter, "view", "mnt-view", top});
      ASSERT_EQ(v.exit_code, 0) << v.err;
      RunResult m = Ctr({"snapshots", "--snapshotter", snapshotter, "mounts", target, "mnt-view"});
      ASSERT_EQ(m.exit_code, 0) << m.err;
      RunResult sh = ::berth::testing::Run({"sh", "-c", m.out});
      ASSERT_EQ(sh.exit_code, 0) << m.out << sh.err;
      mounted_.push_back(target);
      ExpectTree(target);
      ASSERT_EQ(::umount2(target.c_str(), 0), 0);
      mounted_.pop_back();
      EXPECT_EQ(Ctr({"snapshots", "--snapshotter", snapshotter, "rm", "mnt-view"}).exit_code, 0);
      return;
    }
    RunResult m = Ctr({"images", "mount", "--snapshotter", snapshotter, ref, target});
    ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
    mounted_.push_back(target);
    ExpectTree(target);
    RunResult u = Ctr({"images", "unmount", "--rm", target});
    EXPECT_EQ(u.exit_code, 0) << u.out << u.err;
    if (u.exit_code == 0) mounted_.pop_back();
  }

  LocalRegistry registry_;
  std::string ref_, zstd_ref_;
  std::vector<std::string> mounted_;
};

TEST_F(CtrPullTest, PullUnpacksIntoOverlayfs) {
  Pull(ref_, "overlayfs");
  // One committed snapshot per layer (5: busybox, etc, data, whiteout, opaque).
  RunResult s = Ctr({"snapshots", "--snapshotter", "overlayfs", "ls"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(Lines(s.out).size(), 6u) << s.out;
  MountImageAndCompare(ref_, "overlayfs");
}

TEST_F(CtrPullTest, PullUnpacksIntoNative) {
  Pull(ref_, "native");
  MountImageAndCompare(ref_, "native");
}

TEST_F(CtrPullTest, PullZstdLayers) {
  RunResult raw = ::berth::testing::Run(
      {"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + zstd_ref_});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  ASSERT_NE(raw.out.find("tar+zstd"), std::string::npos) << raw.out;
  Pull(zstd_ref_, "overlayfs");
  MountImageAndCompare(zstd_ref_, "overlayfs");
}

TEST_F(CtrPullTest, SnapshotsMountsShowsTheTree) {
  Pull(ref_, "overlayfs");
  // The top of the chain: the committed snapshot nobody names as parent.
  RunResult s = Ctr({"snapshots", "--snapshotter", "overlayfs", "ls"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  std::set<std::string> names, parents;
  auto lines = Lines(s.out);
  for (size_t i = 1; i < lines.size(); ++i) {
    auto c = Cells(lines[i]);
    if (c.size() >= 3) {
      names.insert(c[0]);
      parents.insert(c[1]);
    }
  }
  std::string top;
  for (const auto& n : names) {
    if (!parents.contains(n)) top = n;
  }
  ASSERT_FALSE(top.empty()) << s.out;
  ASSERT_EQ(Ctr({"snapshots", "--snapshotter", "overlayfs", "view", "pull-view", top}).exit_code, 0);
  std::string target = tmp_ + "/view";
  fs::create_directories(target);
  RunResult m = Ctr({"snapshots", "--snapshotter", "overlayfs", "mounts", target, "pull-view"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  RunResult sh = ::berth::testing::Run({"sh", "-c", m.out});
  ASSERT_EQ(sh.exit_code, 0) << m.out << sh.err;
  mounted_.push_back(target);
  ExpectTree(target);
  ASSERT_EQ(::umount2(target.c_str(), 0), 0);
  mounted_.pop_back();
  EXPECT_EQ(Ctr({"snapshots", "--snapshotter", "overlayfs", "rm", "pull-view"}).exit_code, 0);
}

// Pulling twice is a no-op for the unpacker (snapshots exist), and removal + re-pull works.
TEST_F(CtrPullTest, RepullAfterImageRemoval) {
  Pull(ref_, "overlayfs");
  Pull(ref_, "overlayfs");
  ASSERT_EQ(Ctr({"images", "rm", "--sync", ref_}).exit_code, 0);
  Pull(ref_, "overlayfs");
  MountImageAndCompare(ref_, "overlayfs");
}

// Diff.Apply over raw gRPC: the blob is looked up in the caller's namespace, unknown media
// types are Unimplemented, and each write mode (bind source, temp mount) yields the diffID.
TEST_F(CtrPullTest, DiffApplyOverGrpc) {
  Pull(ref_, "overlayfs");
  // Layer digest → diffID, from the labels the unpacker set.
  RunResult ls = Ctr({"content", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  std::string layer, diff_id;
  for (const auto& line : Lines(ls.out)) {
    auto pos = line.find("containerd.io/uncompressed=");
    if (pos == std::string::npos) continue;
    layer = Cells(line)[0];
    diff_id = line.substr(pos + 27, 71);
    if (line.find("MiB") != std::string::npos) break;  // prefer the busybox layer
  }
  ASSERT_FALSE(layer.empty()) << ls.out;

  namespace dapi = containerd::services::diff::v1;
  auto stub = dapi::Diff::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  auto apply = [&](const std::string& ns, const std::string& media_type,
                   const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>&
                       mounts,
                   dapi::ApplyResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    ctx.AddMetadata("containerd-namespace", ns);
    dapi::ApplyRequest req;
    req.mutable_diff()->set_media_type(media_type);
    req.mutable_diff()->set_digest(layer);
    for (const auto& [type, source, options] : mounts) {
      auto* m = req.add_mounts();
      m->set_type(type);
      m->set_source(source);
      for (const auto& o : options) m->add_options(o);
    }
    return stub->Apply(&ctx, req, resp);
  };
  constexpr char kGz[] = "application/vnd.oci.image.layer.v1.tar+gzip";
  std::string dir = tmp_ + "/apply-bind";
  fs::create_directories(dir);
  dapi::ApplyResponse resp;
  EXPECT_EQ(apply("other", kGz, {{"bind", dir, {"rbind", "rw"}}}, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(apply("default", "application/vnd.oci.image.layer.v1.tar+encrypted",
                  {{"bind", dir, {"rbind", "rw"}}}, &resp)
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  grpc::Status st = apply("default", kGz, {{"bind", dir, {"rbind", "rw"}}}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.applied().media_type(), "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(resp.applied().digest(), diff_id);
  EXPECT_GT(resp.applied().size(), 0);
  EXPECT_FALSE(fs::is_empty(dir));

  // Anything else is mounted on a temp dir under <root>/tmpmounts and unmounted afterwards.
  dapi::ApplyResponse resp2;
  st = apply("default", kGz, {{"tmpfs", "tmpfs", {"size=64m"}}}, &resp2);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp2.applied().digest(), diff_id);
  EXPECT_EQ(ReadText("/proc/self/mountinfo").find(root_ + "/tmpmounts"), std::string::npos);
}

}  // namespace
}  // namespace berth::testing
