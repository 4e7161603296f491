// berthd killed with SIGKILL in the middle of Diff.Apply during `ctr images pull`: after a
// restart no committed snapshot is broken, the half-written extract snapshot is only an
// Active snapshot that GC removes once the dead pull's lease goes, a new pull completes, the
// unpacked tree is right, and no mount is left behind.
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

// The slow layer: 4000 small files. (Creating an inode costs ~0.25 ms on a busy ext4 here,
// so this layer takes around a second to apply.)
constexpr int kDirs = 40, kFilesPerDir = 100;

// The slow layer, built with python's tarfile in memory (fast, no staging tree).
constexpr char kManyFilesPy[] = R"PY(
import io, sys, tarfile
dirs, per = int(sys.argv[2]), int(sys.argv[3])
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as tf:
    for d in range(dirs):
        t = tarfile.TarInfo("many/d%03d" % d); t.type = tarfile.DIRTYPE; t.mode = 0o755; t.mtime = 1700000000
        tf.addfile(t)
        for i in range(per):
            data = ("file %d/%d\n" % (d, i)).encode() * 3
            t = tarfile.TarInfo("many/d%03d/f%04d" % (d, i)); t.size = len(data); t.mtime = 1700000000
            tf.addfile(t, io.BytesIO(data))
)PY";

class UnpackCrashTest : public DaemonTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFailure() || IsSkipped()) return;
    for (const char* bin : {"docker-registry", "skopeo", "python3", "tar"}) {
      if (::berth::testing::Run({"sh", "-c", std::string("command -v ") + bin}).exit_code != 0) {
        GTEST_SKIP() << "needs " << bin << " (scripts/install-deps.sh)";
      }
    }
    ASSERT_TRUE(registry_.Start(tmp_ + "/registry"));
  }
  void TearDown() override {
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    registry_.Stop();
    DaemonTest::TearDown();
  }

  RunResult Snap(std::vector<std::string> args) {
    args.insert(args.begin(), {"snapshots", "--snapshotter", GetParam()});
    return Ctr(args);
  }
  struct SnapRow {
    std::string name, parent, kind;
  };
  std::vector<SnapRow> Snapshots() {
    RunResult r = Snap({"ls"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<SnapRow> out;
    auto lines = Lines(r.out);
    // KEY may hold a space ("extract-<nanos>-<b64> <chainID>"): the last two cells are
    // PARENT (or empty) and KIND, so split from the right on the known kinds.
    for (size_t i = 1; i < lines.size(); ++i) {
      auto c = Cells(lines[i]);
      if (c.empty()) continue;
      SnapRow row;
      row.kind = c.back();
      c.pop_back();
      if (!c.empty() && c.back().starts_with("sha256:") && c.size() >= 2 &&
          !(c.size() == 2 && c[0].starts_with("extract-"))) {
        row.parent = c.back();
        c.pop_back();
      }
      for (const auto& part : c) row.name += (row.name.empty() ? "" : " ") + part;
      out.push_back(row);
    }
    return out;
  }
  // Directories of snapshots on disk.
  size_t SnapshotDirsOnDisk() {
    std::error_code ec;
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(root_ + "/snapshots/" + GetParam() + "/snapshots", ec)) {
      (void)e;
      ++n;
    }
    return n;
  }

  LocalRegistry registry_;
  std::vector<std::string> mounted_;
};

TEST_P(UnpackCrashTest, KillDuringApplyThenRepull) {
  const std::string snapshotter = GetParam();
  std::string work = tmp_ + "/work";
  fs::create_directories(work);
  const std::string big1 = RandomBytes(16 << 20, 11), big2 = RandomBytes(6 << 20, 12);
  RunResult py = ::berth::testing::Run({"python3", "-c", kManyFilesPy, work + "/many.tar",
                                        std::to_string(kDirs), std::to_string(kFilesPerDir)},
                                       "", 120);
  ASSERT_EQ(py.exit_code, 0) << py.err;
  OciLayoutBuilder layout(tmp_ + "/oci");
  ManifestInfo img = layout.AddImage({{TarFiles(work, {{"big/one.bin", big1}}), true, 1},
                                      {ReadFileBytes(work + "/many.tar"), true, 1},
                                      {TarFiles(work, {{"big/two.bin", big2}, {"etc/last", "last\n"}}), true, 1}});
  layout.Tag("1", img.desc);
  const std::string ref = registry_.addr() + "/crash/unpack:1";
  ASSERT_EQ(PushOciLayout(layout.dir(), "1", ref), "");
  // Chain IDs of the three layers.
  std::vector<std::string> chain = {img.diff_ids[0]};
  for (size_t i = 1; i < img.diff_ids.size(); ++i) {
    chain.push_back(Sha256Digest(chain.back() + " " + img.diff_ids[i]));
  }

  // Pull in the background. As soon as berthd logs the slow layer's Apply, freeze it
  // (SIGSTOP), then let it run in short steps until part of the layer is on disk, and kill it
  // (SIGKILL) while it is still in that Apply, however fast this machine extracts.
  RunResult first;
  std::thread pull([&] {
    first = Ctr({"images", "pull", "--plain-http", "--snapshotter", snapshotter, ref});
  });
  const std::string marker = "apply diff ns=default digest=" + img.layers[1].digest;
  const std::string snapdir = root_ + "/snapshots/" + snapshotter + "/snapshots";
  bool killed = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::ifstream log(log_path_, std::ios::binary);
  std::string log_tail;
  std::string many_dir;
  while (!killed && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    // What the log gained since last time (keeping a marker-sized overlap).
    log.clear();
    std::string chunk((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    size_t keep = std::min(log_tail.size(), marker.size());
    log_tail = log_tail.substr(log_tail.size() - keep) + chunk;
    if (log_tail.find(marker) == std::string::npos) continue;
    ::kill(daemon_pid_, SIGSTOP);  // (no ASSERT until it is dead and the pull joined)
    // The newest snapshot directory is the one being extracted into.
    int newest = -1;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(snapdir, ec)) {
      newest = std::max(newest, std::atoi(e.path().filename().c_str()));
    }
    if (newest >= 0) {
      many_dir = snapdir + "/" + std::to_string(newest) +
                 (snapshotter == "overlayfs" ? "/fs" : "") + "/many";
    }
    for (int step = 0; newest >= 0 && step < 5000; ++step) {
      size_t dirs = 0;
      for (const auto& e : fs::directory_iterator(many_dir, ec)) {
        (void)e;
        ++dirs;
      }
      if (dirs >= 3) break;
      ::kill(daemon_pid_, SIGCONT);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ::kill(daemon_pid_, SIGSTOP);
    }
    KillDaemon();  // SIGKILL ends a stopped process too
    killed = true;
  }
  if (!killed) KillDaemon();
  pull.join();
  ASSERT_TRUE(killed) << "never saw the slow layer being applied:\n" << ReadFileBytes(log_path_);
  ASSERT_FALSE(many_dir.empty()) << "no snapshot directory under " << snapdir;
  EXPECT_NE(first.exit_code, 0) << "the pull finished before the kill: " << first.out;
  size_t written = 0;
  {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(many_dir, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      ++written;
    }
  }
  EXPECT_GT(written, 0u);
  EXPECT_LT(written, static_cast<size_t>(kDirs * (kFilesPerDir + 1))) << "the apply had finished";

  ASSERT_TRUE(StartDaemon());
  // Only the first layer was committed; the second is an Active extract snapshot on top of it.
  std::vector<SnapRow> rows = Snapshots();
  std::string extract_key;
  for (const auto& r : rows) {
    if (r.kind == "Committed") {
      EXPECT_EQ(r.name, chain[0]) << "unexpected committed snapshot";
    } else {
      EXPECT_EQ(r.kind, "Active") << r.name;
      EXPECT_TRUE(r.name.starts_with("extract-")) << r.name;
      EXPECT_EQ(r.parent, chain[0]) << r.name;
      extract_key = r.name;
    }
  }
  EXPECT_FALSE(extract_key.empty()) << Snap({"ls"}).out;

  // A new pull completes (the content is all there; the leftover does not get in the way).
  RunResult again = Ctr({"images", "pull", "--plain-http", "--snapshotter", snapshotter, ref});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err << "\n" << ReadFileBytes(log_path_);
  RunResult chk = Ctr({"images", "check", "--snapshotter", snapshotter, "name==" + ref});
  ASSERT_EQ(chk.exit_code, 0) << chk.err;
  auto cl = Lines(chk.out);
  ASSERT_EQ(cl.size(), 2u) << chk.out;
  EXPECT_NE(cl[1].find("complete"), std::string::npos) << chk.out;
  EXPECT_EQ(Cells(cl[1]).back(), "true") << chk.out;

  // The dead pull's lease still holds the leftover; removing it lets GC collect it.
  RunResult leases = Ctr({"leases", "ls", "-q"});
  ASSERT_EQ(leases.exit_code, 0) << leases.err;
  for (const auto& id : Lines(leases.out)) {
    if (!id.empty()) {
      EXPECT_EQ(Ctr({"leases", "rm", "--sync", id}).exit_code, 0) << id;
    }
  }
  bool clean = false;
  for (int i = 0; i < 100 && !clean; ++i) {
    rows = Snapshots();
    clean = rows.size() == 3 && SnapshotDirsOnDisk() == 3;
    for (const auto& r : rows) clean = clean && r.kind == "Committed";
    if (!clean) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(clean) << Snap({"ls"}).out << "dirs on disk: " << SnapshotDirsOnDisk();
  std::set<std::string> names;
  for (const auto& r : rows) names.insert(r.name);
  EXPECT_EQ(names, std::set<std::string>(chain.begin(), chain.end()));

  // The unpacked tree is whole.
  std::string target = tmp_ + "/view";
  fs::create_directories(target);
  ASSERT_EQ(Snap({"view", "crash-view", chain.back()}).exit_code, 0);
  RunResult m = Snap({"mounts", target, "crash-view"});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  RunResult sh = ::berth::testing::Run({"sh", "-c", m.out});
  ASSERT_EQ(sh.exit_code, 0) << m.out << sh.err;
  mounted_.push_back(target);
  EXPECT_EQ(Sha256Digest(ReadFileBytes(target + "/big/one.bin")), Sha256Digest(big1));
  EXPECT_EQ(Sha256Digest(ReadFileBytes(target + "/big/two.bin")), Sha256Digest(big2));
  EXPECT_EQ(ReadFileBytes(target + "/etc/last"), "last\n");
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(target + "/many")) {
    files += e.is_regular_file();
  }
  EXPECT_EQ(files, static_cast<size_t>(kDirs * kFilesPerDir));
  EXPECT_EQ(ReadFileBytes(target + "/many/d039/f0099"), "file 39/99\nfile 39/99\nfile 39/99\n");
  ASSERT_EQ(::umount2(target.c_str(), 0), 0);
  mounted_.pop_back();
  EXPECT_EQ(Snap({"rm", "crash-view"}).exit_code, 0);

  // Nothing of berthd's stays mounted under the test root.
  EXPECT_EQ(MountsUnder(tmp_), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Snapshotters, UnpackCrashTest, ::testing::Values("overlayfs", "native"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace berth::testing
