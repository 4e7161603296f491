// Tasks against the real ctr, with both shims berthd can run for io.containerd.runc.v2: ours
// (containerd-shim-berth-v2, the default) and the real containerd-shim-runc-v2 (Debian's
// containerd package, selected by [runtimes."io.containerd.runc.v2"] binary in the config).
// `ctr run`, `ctr tasks ...`, Wait, and shims surviving a berthd crash (runtime v2 recovery).
// The containers run a busybox-static root filesystem built from /bin/busybox. runc keeps its
// state under the test's temp dir (`--runc-root`), namespaces are unique. The real runc shim
// puts its socket in /run/containerd/s (hard-wired in it); ours uses BERTH_SHIM_RUN_DIR.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "event_recorder.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kRuncShim[] = "/usr/bin/containerd-shim-runc-v2";

// The parameter: "berth" (default runtime, our shim) or "runc" (the real runc shim via config).
class CtrTasksTest : public TasksTest, public ::testing::WithParamInterface<std::string> {
 protected:
  bool runc_shim() const { return GetParam() == "runc"; }
  std::string shim_name() const {
    return runc_shim() ? "containerd-shim-runc-v2" : "containerd-shim-berth-v2";
  }
  std::string shim_binary() const {
    return runc_shim() ? std::string(kRuncShim)
                       : (fs::path(BinaryPath("berthd")).parent_path() / shim_name()).string();
  }
  std::string runtime_config() const {
    return runc_shim() ? std::string("version = 1\n[runtimes.\"io.containerd.runc.v2\"]\n") +
                             "binary = \"" + kRuncShim + "\"\n"
                       : "";
  }

  void SetUp() override {
    if (::access(kRuncShim, X_OK) != 0) GTEST_SKIP() << "needs containerd-shim-runc-v2";
    TasksTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    if (runc_shim()) {
      ASSERT_EQ(StopDaemon(), 0);
      ASSERT_TRUE(WriteFileBytes(tmp_ + "/config.toml", runtime_config()));
      ASSERT_TRUE(StartDaemon());
    }
  }

  void TearDown() override {
    TasksTest::TearDown();
    // A SIGKILLed shim leaves its socket under /run/containerd/s.
    for (const auto& sock : killed_shim_sockets_) ::unlink(sock.c_str());
  }

  // DaemonTest::Ctr with `--fifo-dir <tmp>/fifo` for the commands that make stdio FIFOs (ctr's
  // default is /run/containerd/fifo, which tests must not touch).
  RunResult Ctr(std::vector<std::string> args, const std::string& ns = "default") {
    size_t at = 0;
    if (!args.empty() && args[0] == "run") at = 1;
    if (args.size() > 1 && args[0] == "tasks" && (args[1] == "exec" || args[1] == "start")) at = 2;
    if (at != 0) args.insert(args.begin() + static_cast<long>(at), {"--fifo-dir", tmp_ + "/fifo"});
    return DaemonTest::Ctr(args, ns);
  }

  // The pid of the shim server serving `id` (0 if none).
  int ShimPid(const std::string& id) {
    RunResult pids = berth::testing::Run(
        {"pgrep", "-f", shim_name() + " -namespace " + ns_ + " -id " + id + " "});
    auto lines = Lines(pids.out);
    return lines.empty() ? 0 : std::stoi(lines[0]);
  }

  // The shim's socket path, from the bundle's `address`.
  std::string ShimSocket(const std::string& id) {
    std::string addr =
        ReadFileBytes(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/" + id + "/address");
    if (addr.starts_with("unix://")) addr = addr.substr(7);
    while (!addr.empty() && isspace(static_cast<unsigned char>(addr.back()))) addr.pop_back();
    return addr;
  }

  // SIGKILLs the shim serving `id` (and the container's init), remembering its socket.
  void KillShim(const std::string& id) {
    std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/" + id;
    std::string addr = ReadFileBytes(bundle + "/address");
    if (addr.starts_with("unix://")) addr = addr.substr(7);
    while (!addr.empty() && isspace(static_cast<unsigned char>(addr.back()))) addr.pop_back();
    if (!addr.empty()) killed_shim_sockets_.push_back(addr);
    std::ifstream in(bundle + "/init.pid");
    int init = 0;
    in >> init;
    RunResult pids = berth::testing::Run(
        {"pgrep", "-f", shim_name() + " -namespace " + ns_ + " -id " + id + " "});
    EXPECT_FALSE(Lines(pids.out).empty());
    for (const auto& p : Lines(pids.out)) ::kill(std::stoi(p), SIGKILL);
    if (init > 0) ::kill(init, SIGKILL);
  }

  std::vector<std::string> killed_shim_sockets_;

  std::vector<std::string> RunArgs(const std::vector<std::string>& tail, bool detach,
                                   bool rm = false) {
    std::vector<std::string> a = {"run"};
    if (detach) a.push_back("-d");
    if (rm) a.push_back("--rm");
    a.insert(a.end(), {"--runc-root", runc_root_, "--rootfs", rootfs_});
    a.insert(a.end(), tail.begin(), tail.end());
    return a;
  }

  // Imports a one-layer image of the busybox tree as `name` (ctr images import of an OCI
  // layout tar: content, images and an unpack through berthd's snapshotter and Diff.Apply).
  void ImportBusyboxImage(const std::string& name) {
    std::string layer = tmp_ + "/bb-layer.tar";
    RunResult t = berth::testing::Run({"tar", "--numeric-owner", "--owner=0", "--group=0", "-C",
                                       rootfs_, "-cf", layer, "bin", "proc", "sys", "dev", "tmp",
                                       "etc"});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    OciLayoutBuilder b(tmp_ + "/bb-layout");
    ManifestInfo m = b.AddImage({LayerSpec{ReadFileBytes(layer), /*gzip=*/true, /*level=*/1}});
    nlohmann::json desc = {{"mediaType", m.desc.media_type},
                           {"digest", m.desc.digest},
                           {"size", m.desc.size},
                           {"annotations",
                            {{"io.containerd.image.name", name},
                             {"org.opencontainers.image.ref.name", "latest"}}}};
    nlohmann::json index = {{"schemaVersion", 2}, {"manifests", {desc}}};
    ASSERT_TRUE(WriteFileBytes(b.dir() + "/index.json", index.dump()));
    std::string tar = tmp_ + "/bb-image.tar";
    t = berth::testing::Run({"tar", "-C", b.dir(), "-cf", tar, "oci-layout", "index.json", "blobs"});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    RunResult r = Ctr({"images", "import", tar}, ns_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // `ctr ...` on a pseudo-terminal (script(1)), for -t: output with CRLF turned into LF.
  RunResult CtrTty(const std::string& args) {
    std::string cmd = "/usr/bin/ctr --address " + socket_ + " --namespace " + ns_ + " " + args;
    // After the subcommand ("run" or "tasks exec"): the FIFOs go under the temp dir.
    size_t sub = cmd.find(args.starts_with("run") ? " run " : " exec ");
    cmd.insert(sub + (args.starts_with("run") ? 5 : 6), "--fifo-dir " + tmp_ + "/fifo ");
    RunResult r = berth::testing::Run({"script", "-qec", cmd, "/dev/null"}, "", 60);
    std::string out;
    for (char c : r.out) {
      if (c != '\r') out += c;
    }
    r.out = out;
    return r;
  }
};

TEST_P(CtrTasksTest, RunRmEchoHi) {
  RunResult r = Ctr(RunArgs({"echo1", "/bin/echo", "hi"}, false, true), ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  // --rm removed task and container; the bundle is gone too.
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "");
  EXPECT_FALSE(fs::exists(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/echo1"));
}

TEST_P(CtrTasksTest, RunExitCode) {
  RunResult r = Ctr(RunArgs({"exit7", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, false, true),
                    ns_);
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_NE(r.err.find("err"), std::string::npos);
}

TEST_P(CtrTasksTest, TaskNotFoundAndDuplicate) {
  RunResult r = Ctr({"tasks", "kill", "nope"}, ns_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
  ASSERT_EQ(Ctr(RunArgs({"dup", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  r = Ctr({"tasks", "start", "dup"}, ns_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
}

TEST_P(CtrTasksTest, DetachedLifecycle) {
  RunResult r = Ctr(RunArgs({"life", "/bin/sleep", "1000"}, true), ns_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(TaskStatus("life"), "RUNNING");

  r = Ctr({"tasks", "exec", "--exec-id", "e1", "life", "/bin/sh", "-c", "echo from-exec; exit 3"}, ns_);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "from-exec\n");

  r = Ctr({"tasks", "ps", "life"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(Lines(r.out).size(), 2u) << r.out;

  r = Ctr({"tasks", "metrics", "life"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("life"), std::string::npos) << r.out;

  ASSERT_EQ(Ctr({"tasks", "pause", "life"}, ns_).exit_code, 0);
  EXPECT_EQ(TaskStatus("life"), "PAUSED");
  ASSERT_EQ(Ctr({"tasks", "resume", "life"}, ns_).exit_code, 0);
  EXPECT_EQ(TaskStatus("life"), "RUNNING");

  // Deleting a running task is refused by the shim.
  EXPECT_NE(Ctr({"tasks", "delete", "life"}, ns_).exit_code, 0);

  ASSERT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", "life"}, ns_).exit_code, 0);
  ASSERT_TRUE(WaitStatus("life", "STOPPED", 10));
  r = Ctr({"tasks", "delete", "life"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;  // ctr only warns about the exit status
  EXPECT_NE(r.err.find("exit code 137"), std::string::npos) << r.err;
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "");
  EXPECT_EQ(Ctr({"containers", "rm", "life"}, ns_).exit_code, 0);
  EXPECT_FALSE(fs::exists(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/life"));
}

// kill -9 of berthd with five containers running and one exiting while it is down.
TEST_P(CtrTasksTest, ShimsSurviveDaemonCrash) {
  const std::vector<std::string> ids = {"c1", "c2", "c3", "c4", "c5"};
  for (const auto& id : ids) {
    ASSERT_EQ(Ctr(RunArgs({id, "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  }
  ASSERT_EQ(Ctr(RunArgs({"c6", "/bin/sh", "-c", "sleep 2; exit 5"}, true), ns_).exit_code, 0);
  KillDaemon();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // c6 exits while we are down
  ASSERT_TRUE(StartDaemon());
  RunResult ls = Ctr({"tasks", "ls", "-q"}, ns_);
  std::vector<std::string> listed = Lines(ls.out);
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, (std::vector<std::string>{"c1", "c2", "c3", "c4", "c5", "c6"}));
  for (const auto& id : ids) EXPECT_EQ(TaskStatus(id), "RUNNING") << id;
  EXPECT_EQ(TaskStatus("c6"), "STOPPED");
  RunResult r = Ctr({"tasks", "delete", "c6"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("exit code 5"), std::string::npos) << r.err;
  for (const auto& id : ids) {
    r = Ctr({"tasks", "exec", "--exec-id", "x", id, "/bin/echo", "in-" + id}, ns_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "in-" + id + "\n");
  }
  for (const auto& id : ids) {
    ASSERT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", id}, ns_).exit_code, 0);
    ASSERT_TRUE(WaitStatus(id, "STOPPED", 10));
    r = Ctr({"tasks", "delete", id}, ns_);
    EXPECT_NE(r.err.find("exit code 137"), std::string::npos) << r.err;
  }
}

TEST_P(CtrTasksTest, DeadShimCleanedUpAtRestart) {
  ASSERT_EQ(Ctr(RunArgs({"dead", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/dead";
  KillDaemon();
  KillShim("dead");  // and the container, while berthd is down
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "");
  EXPECT_FALSE(fs::exists(bundle));
}

TEST_P(CtrTasksTest, ShimDeathWhileRunningForgetsTask) {
  ASSERT_EQ(Ctr(RunArgs({"gone", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/gone";
  KillShim("gone");
  bool forgotten = false;
  for (int i = 0; i < 100 && !forgotten; ++i) {
    forgotten = Ctr({"tasks", "ls", "-q"}, ns_).out.empty();
    if (!forgotten) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(forgotten);
  for (int i = 0; i < 50 && fs::exists(bundle); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(fs::exists(bundle));
}

// The shim's events travel over the daemon's `<socket>.ttrpc` Forward endpoint into the exchange.
TEST_P(CtrTasksTest, ShimEventsReachSubscribers) {
  EventRecorder recorder(socket_, {"namespace==" + ns_ + ",topic~=\"^/tasks/\""});
  auto topics = [&](const std::string& id) {
    std::vector<std::string> out;
    for (const auto& e : recorder.Events()) {
      if (e.topic() == "/tasks/exit") {
        containerd::events::TaskExit x;
        x.ParseFromString(e.event().value());
        if (x.container_id() == id) out.push_back(e.topic() + ":" + std::to_string(x.exit_status()));
      } else if (e.event().value().find(id) != std::string::npos) {
        out.push_back(e.topic());
      }
    }
    return out;
  };
  // The subscription is asynchronous: run probes until one is seen.
  for (int i = 0; i < 5; ++i) {
    std::string id = "probe" + std::to_string(i);
    ASSERT_EQ(Ctr(RunArgs({id, "/bin/true"}, false, true), ns_).exit_code, 0);
    if (!topics(id).empty()) break;
  }
  ASSERT_EQ(Ctr(RunArgs({"ev", "/bin/sh", "-c", "exit 4"}, false, true), ns_).exit_code, 4);
  for (int i = 0; i < 50 && topics("ev").size() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  recorder.Stop();
  EXPECT_EQ(topics("ev"), (std::vector<std::string>{"/tasks/create", "/tasks/start",
                                                    "/tasks/exit:4", "/tasks/delete"}));
}

// [runtimes."<name>"] binary overrides the name-based shim lookup.
TEST_P(CtrTasksTest, ConfiguredRuntimeBinaryIsUsed) {
  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_TRUE(WriteFileBytes(tmp_ + "/config.toml",
                             "version = 1\n[runtimes.\"io.containerd.runc.v2\"]\n"
                             "binary = \"/bin/false\"\n"));
  ASSERT_TRUE(StartDaemon());
  RunResult r = Ctr(RunArgs({"cfg", "/bin/true"}, false, true), ns_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/bin/false"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/cfg"));
  Ctr({"containers", "rm", "cfg"}, ns_);
}

// `ctr run IMG` with an image imported into berthd: the rootfs is the snapshot's overlay
// mounts, mounted by the shim. Output, exit codes, -d, tasks ls, -t, tasks exec -t.
TEST_P(CtrTasksTest, RunImage) {
  const std::string img = "docker.io/library/bbtest:latest";
  ImportBusyboxImage(img);
  if (HasFatalFailure()) return;
  const std::vector<std::string> rc = {"--runc-root", runc_root_};
  auto run = [&](std::vector<std::string> flags, std::vector<std::string> tail) {
    // ctr's default runtime, spelled out: our shim, or the real runc shim by config.
    std::vector<std::string> a = {"run", "--runtime", "io.containerd.runc.v2"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.insert(a.end(), rc.begin(), rc.end());
    a.push_back(img);
    a.insert(a.end(), tail.begin(), tail.end());
    return Ctr(a, ns_);
  };
  RunResult r = run({"--rm"}, {"i1", "echo", "hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  r = run({"--rm"}, {"i2", "sh", "-c", "echo out; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");

  r = run({"-d"}, {"i3", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "i3\n");
  EXPECT_EQ(TaskStatus("i3"), "RUNNING");
  r = CtrTty("tasks exec -t --exec-id t1 i3 sh -c 'tty; echo tty-ok; exit 6'");
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tty-ok\n"), std::string::npos) << r.out;
  r = Ctr({"tasks", "exec", "--exec-id", "e1", "i3", "cat", "/proc/1/cmdline"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sleep"), std::string::npos) << r.out;
  ASSERT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", "i3"}, ns_).exit_code, 0);
  ASSERT_TRUE(WaitStatus("i3", "STOPPED", 10));
  EXPECT_EQ(Ctr({"tasks", "delete", "i3"}, ns_).exit_code, 0);
  EXPECT_EQ(Ctr({"containers", "rm", "i3"}, ns_).exit_code, 0);

  r = CtrTty("run -t --rm --runc-root " + runc_root_ + " " + img + " i4 sh -c 'tty; exit 4'");
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.out.find("/dev/pts/0"), std::string::npos) << r.out;
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  // Every container snapshot went with its container: only the image's layer is left.
  RunResult sn = Ctr({"snapshots", "ls"}, ns_);
  EXPECT_EQ(Lines(sn.out).size(), 2u) << sn.out;
  EXPECT_TRUE(MountsUnder(state_).empty());
}

// io.containerd.runc.v2 runs our shim by default (found next to berthd), the real runc shim
// when configured; either way the shim gets BERTH_SHIM_RUN_DIR=<state dir>.
TEST_P(CtrTasksTest, ShimSelectionAndRunDir) {
  ASSERT_EQ(Ctr(RunArgs({"sel", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/sel";
  EXPECT_EQ(fs::canonical(ReadFileBytes(bundle + "/shim-binary-path")), fs::canonical(shim_binary()));
  int pid = ShimPid("sel");
  ASSERT_GT(pid, 0);
  std::string env = ReadFileBytes("/proc/" + std::to_string(pid) + "/environ");
  EXPECT_NE(env.find(std::string("BERTH_SHIM_RUN_DIR=") + state_ + '\0'), std::string::npos);
  EXPECT_NE(env.find("TTRPC_ADDRESS=" + socket_ + ".ttrpc" + '\0'), std::string::npos);
}

int ThreadCount(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Threads:")) return std::stoi(line.substr(8));
  }
  return -1;
}

// Tasks.Wait holds no gRPC thread: 50 concurrent Waits leave the daemon's thread count flat
// and other calls prompt; a cancelled Wait ends at once; the rest answer when the tasks exit.
TEST_P(CtrTasksTest, WaitIsEventDriven) {
  namespace tv1 = containerd::services::tasks::v1;
  using Clock = std::chrono::steady_clock;
  constexpr int kContainers = 5, kWaits = 50;
  for (int i = 0; i < kContainers; ++i) {
    ASSERT_EQ(Ctr(RunArgs({"w" + std::to_string(i), "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  }
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  auto stub = tv1::Tasks::NewStub(channel);
  {
    // Warm up the channel and the daemon's callback machinery before counting threads.
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", ns_);
    tv1::ListTasksRequest req;
    tv1::ListTasksResponse resp;
    ASSERT_TRUE(stub->List(&ctx, req, &resp).ok());
  }
  int before = ThreadCount(daemon_pid_);
  struct Waiter {
    grpc::ClientContext ctx;
    tv1::WaitResponse resp;
    grpc::Status status;
    std::atomic<bool> done{false};
    Clock::time_point end;
  };
  std::vector<std::unique_ptr<Waiter>> ws;
  std::vector<std::thread> threads;
  for (int k = 0; k < kWaits; ++k) {
    ws.push_back(std::make_unique<Waiter>());
    ws[k]->ctx.AddMetadata("containerd-namespace", ns_);
    threads.emplace_back([&, k] {
      tv1::WaitRequest req;
      req.set_container_id("w" + std::to_string(k % kContainers));
      ws[k]->status = stub->Wait(&ws[k]->ctx, req, &ws[k]->resp);
      ws[k]->end = Clock::now();
      ws[k]->done = true;
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  int during = ThreadCount(daemon_pid_);
  EXPECT_LT(during - before, 10) << "threads before " << before << ", with 50 Waits " << during;
  auto t0 = Clock::now();
  RunResult ls = Ctr({"tasks", "ls", "-q"}, ns_);
  auto ls_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(Lines(ls.out).size(), static_cast<size_t>(kContainers)) << ls.out << ls.err;
  EXPECT_LT(ls_ms, 2000);
  std::cerr << "berthd threads: " << before << " idle, " << during << " with " << kWaits
            << " Waits; ctr tasks ls took " << ls_ms << " ms\n";
  for (auto& w : ws) EXPECT_FALSE(w->done);

  auto c0 = Clock::now();
  ws[0]->ctx.TryCancel();
  for (int i = 0; i < 200 && !ws[0]->done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(ws[0]->done);
  EXPECT_EQ(ws[0]->status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(ws[0]->end - c0).count(), 500);
  EXPECT_EQ(TaskStatus("w0"), "RUNNING");

  for (int i = 0; i < kContainers; ++i) {
    EXPECT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", "w" + std::to_string(i)}, ns_).exit_code, 0);
  }
  auto deadline = Clock::now() + std::chrono::seconds(15);
  for (auto& w : ws) {
    while (!w->done && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!w->done) w->ctx.TryCancel();
  }
  for (auto& t : threads) t.join();
  for (int k = 1; k < kWaits; ++k) {
    EXPECT_TRUE(ws[k]->status.ok()) << k << ": " << ws[k]->status.error_message();
    EXPECT_EQ(ws[k]->resp.exit_status(), 137u) << k;
  }
}

// Recovery probes shims in parallel: three hung (SIGSTOPped) shims cost one Connect timeout,
// not three, and the healthy task is back. Leftovers of interrupted creates and removals go.
TEST_P(CtrTasksTest, HungShimsRecoverInParallel) {
  const std::vector<std::string> hung = {"h1", "h2", "h3"};
  ASSERT_EQ(Ctr(RunArgs({"ok", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  std::vector<int> pids;
  for (const auto& id : hung) {
    ASSERT_EQ(Ctr(RunArgs({id, "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
    pids.push_back(ShimPid(id));
    ASSERT_GT(pids.back(), 0);
    killed_shim_sockets_.push_back(ShimSocket(id));
  }
  KillDaemon();
  for (int p : pids) ::kill(p, SIGSTOP);
  std::string tdir = state_ + "/io.containerd.runtime.v2.task/" + ns_;
  std::string wdir = root_ + "/io.containerd.runtime.v2.task/" + ns_;
  fs::create_directories(tdir + "/half/rootfs");  // created, crashed before the shim started
  ASSERT_TRUE(WriteFileBytes(tdir + "/half/config.json", "{}"));
  fs::create_directories(wdir + "/half");
  fs::create_directories(tdir + "/half2/rootfs");  // crashed during the shim's `start`
  ASSERT_TRUE(WriteFileBytes(tdir + "/half2/config.json", "{}"));
  ASSERT_TRUE(WriteFileBytes(tdir + "/half2/shim-binary-path", shim_binary()));
  // The runtime options `start` would have saved: runc's state stays under the temp dir.
  ASSERT_TRUE(WriteFileBytes(tdir + "/half2/options.json", "{\"root\":\"" + runc_root_ + "\"}"));
  fs::create_directories(tdir + "/.gone/rootfs");  // a removal cut short
  fs::create_directories(wdir + "/orphan");        // a work dir without a bundle
  auto t0 = std::chrono::steady_clock::now();
  bool started = StartDaemon();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int p : pids) ::kill(p, SIGKILL);  // whatever recovery did, they go now
  ASSERT_TRUE(started);
  std::cerr << "restart with 3 hung shims took " << secs << " s\n";
  EXPECT_LT(secs, 8.0) << "sequential probing would take >= 15 s";
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "ok\n");
  EXPECT_EQ(TaskStatus("ok"), "RUNNING");
  for (const auto& id : hung) EXPECT_FALSE(fs::exists(tdir + "/" + id)) << id;
  for (const char* leftover : {"/half", "/half2", "/.gone"}) EXPECT_FALSE(fs::exists(tdir + leftover)) << leftover;
  for (const char* leftover : {"/half", "/orphan"}) EXPECT_FALSE(fs::exists(wdir + leftover)) << leftover;
}

// A pending Wait does not hold up a graceful stop (it is not counted as work in flight): the
// client sees the call end, the container keeps running and is recovered.
TEST_P(CtrTasksTest, StopWithPendingWaitIsPrompt) {
  namespace tv1 = containerd::services::tasks::v1;
  ASSERT_EQ(Ctr(RunArgs({"pw", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  auto stub = tv1::Tasks::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", ns_);
  grpc::Status status;
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    tv1::WaitRequest req;
    req.set_container_id("pw");
    tv1::WaitResponse resp;
    status = stub->Wait(&ctx, req, &resp);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(done);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(StopDaemon(), 0);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 3.0) << "the 10 s grace period must not wait for a Wait";
  for (int i = 0; i < 100 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!done) ctx.TryCancel();
  waiter.join();
  EXPECT_FALSE(status.ok());
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(TaskStatus("pw"), "RUNNING");
}

INSTANTIATE_TEST_SUITE_P(Shims, CtrTasksTest, ::testing::Values("berth", "runc"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace berth::testing
