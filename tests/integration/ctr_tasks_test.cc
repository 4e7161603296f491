// Tasks against the real ctr and the real containerd-shim-runc-v2 (Debian's containerd
// package): `ctr run`, `ctr tasks ...`, and shims surviving a berthd crash (runtime v2
// recovery). The containers run a busybox-static root filesystem built from /bin/busybox.
// runc keeps its state under the test's temp dir (`--runc-root`), namespaces are unique.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include <mutex>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

class CtrTasksTest : public DaemonTest {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/containerd-shim-runc-v2", X_OK) != 0 ||
        ::access("/bin/busybox", X_OK) != 0) {
      GTEST_SKIP() << "needs containerd-shim-runc-v2 and busybox-static";
    }
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    ns_ = "tasks-" + std::to_string(::getpid()) + "-" +
          std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 100000);
    rootfs_ = tmp_ + "/busybox";
    runc_root_ = tmp_ + "/runc";
    BuildBusybox(rootfs_);
  }

  void TearDown() override {
    if (!tmp_.empty() && daemon_pid_ >= 0) {
      // Kill and delete whatever a failed test left running.
      RunResult ls = Ctr({"tasks", "ls", "-q"}, ns_);
      for (const auto& id : Lines(ls.out)) {
        Ctr({"tasks", "kill", "-s", "SIGKILL", id}, ns_);
        WaitStatus(id, "STOPPED", 10);
        Ctr({"tasks", "delete", "-f", id}, ns_);
      }
      RunResult cs = Ctr({"containers", "ls", "-q"}, ns_);
      for (const auto& id : Lines(cs.out)) Ctr({"containers", "rm", id}, ns_);
    }
    if (!tmp_.empty()) UnmountUnder(tmp_);
    DaemonTest::TearDown();
    // runc removes /<ns>/<id> but leaves the namespace's cgroup parent (as under containerd).
    std::error_code ec;
    for (const auto& ctl : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      fs::path dir = ctl.path() / ns_;
      if (!ns_.empty() && fs::is_directory(dir, ec)) ::rmdir(dir.c_str());
    }
    // A SIGKILLed shim leaves its socket under /run/containerd/s.
    for (const auto& sock : killed_shim_sockets_) ::unlink(sock.c_str());
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
        {"pgrep", "-f", "containerd-shim-runc-v2 -namespace " + ns_ + " -id " + id + " "});
    EXPECT_FALSE(Lines(pids.out).empty());
    for (const auto& p : Lines(pids.out)) ::kill(std::stoi(p), SIGKILL);
    if (init > 0) ::kill(init, SIGKILL);
  }

  std::vector<std::string> killed_shim_sockets_;

  static void BuildBusybox(const std::string& dir) {
    fs::create_directories(dir + "/bin");
    for (const char* d : {"proc", "sys", "dev", "tmp", "etc"}) fs::create_directories(dir + "/" + d);
    fs::copy_file("/bin/busybox", dir + "/bin/busybox");
    ::chmod((dir + "/bin/busybox").c_str(), 0755);
    RunResult list = berth::testing::Run({"/bin/busybox", "--list"});
    for (const auto& applet : Lines(list.out)) {
      if (applet.empty() || applet == "busybox") continue;
      std::error_code ec;
      fs::create_symlink("busybox", dir + "/bin/" + applet, ec);
    }
  }

  std::vector<std::string> RunArgs(const std::vector<std::string>& tail, bool detach,
                                   bool rm = false) {
    std::vector<std::string> a = {"run"};
    if (detach) a.push_back("-d");
    if (rm) a.push_back("--rm");
    a.insert(a.end(), {"--runc-root", runc_root_, "--rootfs", rootfs_});
    a.insert(a.end(), tail.begin(), tail.end());
    return a;
  }

  // The STATUS column of `ctr tasks ls` for `id` ("" if not listed).
  std::string Status(const std::string& id) {
    RunResult r = Ctr({"tasks", "ls"}, ns_);
    for (const auto& line : Lines(r.out)) {
      auto cells = Cells(line);
      if (cells.size() >= 3 && cells[0] == id) return cells[2];
    }
    return "";
  }

  bool WaitStatus(const std::string& id, const std::string& want, int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (Status(id) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::string ns_, rootfs_, runc_root_;
};

TEST_F(CtrTasksTest, RunRmEchoHi) {
  RunResult r = Ctr(RunArgs({"echo1", "/bin/echo", "hi"}, false, true), ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  // --rm removed task and container; the bundle is gone too.
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "");
  EXPECT_FALSE(fs::exists(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/echo1"));
}

TEST_F(CtrTasksTest, RunExitCode) {
  RunResult r = Ctr(RunArgs({"exit7", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"}, false, true),
                    ns_);
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_NE(r.err.find("err"), std::string::npos);
}

TEST_F(CtrTasksTest, TaskNotFoundAndDuplicate) {
  RunResult r = Ctr({"tasks", "kill", "nope"}, ns_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
  ASSERT_EQ(Ctr(RunArgs({"dup", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  r = Ctr({"tasks", "start", "dup"}, ns_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
}

TEST_F(CtrTasksTest, DetachedLifecycle) {
  RunResult r = Ctr(RunArgs({"life", "/bin/sleep", "1000"}, true), ns_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Status("life"), "RUNNING");

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
  EXPECT_EQ(Status("life"), "PAUSED");
  ASSERT_EQ(Ctr({"tasks", "resume", "life"}, ns_).exit_code, 0);
  EXPECT_EQ(Status("life"), "RUNNING");

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

TEST_F(CtrTasksTest, ShimsSurviveDaemonCrash) {
  ASSERT_EQ(Ctr(RunArgs({"c1", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  ASSERT_EQ(Ctr(RunArgs({"c2", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  ASSERT_EQ(Ctr(RunArgs({"c3", "/bin/sh", "-c", "sleep 2; exit 5"}, true), ns_).exit_code, 0);
  KillDaemon();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // c3 exits while we are down
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(Status("c1"), "RUNNING");
  EXPECT_EQ(Status("c2"), "RUNNING");
  EXPECT_EQ(Status("c3"), "STOPPED");
  RunResult r = Ctr({"tasks", "delete", "c3"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("exit code 5"), std::string::npos) << r.err;
  for (const char* id : {"c1", "c2"}) {
    ASSERT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", id}, ns_).exit_code, 0);
    ASSERT_TRUE(WaitStatus(id, "STOPPED", 10));
    r = Ctr({"tasks", "delete", id}, ns_);
    EXPECT_NE(r.err.find("exit code 137"), std::string::npos) << r.err;
  }
}

TEST_F(CtrTasksTest, DeadShimCleanedUpAtRestart) {
  ASSERT_EQ(Ctr(RunArgs({"dead", "/bin/sleep", "1000"}, true), ns_).exit_code, 0);
  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/dead";
  KillDaemon();
  KillShim("dead");  // and the container, while berthd is down
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "");
  EXPECT_FALSE(fs::exists(bundle));
}

TEST_F(CtrTasksTest, ShimDeathWhileRunningForgetsTask) {
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
TEST_F(CtrTasksTest, ShimEventsReachSubscribers) {
  namespace ev1 = containerd::services::events::v1;
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  auto events = ev1::Events::NewStub(channel);
  grpc::ClientContext sub_ctx;
  ev1::SubscribeRequest sub;
  sub.add_filters("namespace==" + ns_ + ",topic~=\"^/tasks/\"");
  auto reader = events->Subscribe(&sub_ctx, sub);
  std::mutex mu;
  std::vector<ev1::Envelope> got;
  std::thread th([&] {
    ev1::Envelope env;
    while (reader->Read(&env)) {
      std::lock_guard lock(mu);
      got.push_back(env);
    }
  });
  auto topics = [&](const std::string& id) {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& e : got) {
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
  sub_ctx.TryCancel();
  th.join();
  EXPECT_EQ(topics("ev"), (std::vector<std::string>{"/tasks/create", "/tasks/start",
                                                    "/tasks/exit:4", "/tasks/delete"}));
}

// [runtimes."<name>"] binary overrides the name-based shim lookup.
TEST_F(CtrTasksTest, ConfiguredRuntimeBinaryIsUsed) {
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

}  // namespace
}  // namespace berth::testing
