// containerd-shim-berth-v2 under the real containerd 1.6: `ctr run --runtime
// io.containerd.berth.v2` with a busybox rootfs directory. Each test gets its own containerd
// (temp root/state) whose environment carries BERTH_SHIM_RUN_DIR=<temp>/shimrun, so the shim's
// sockets and runtime state stay in the test's temp dir (nothing under /run/berth), its own
// containerd namespace, and cleans up every task, container and dir it made.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
constexpr char kRuntime[] = "io.containerd.berth.v2";

class ShimContainerdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!ContainerdDaemon::Available() || ::access("/bin/busybox", X_OK) != 0) {
      GTEST_SKIP() << "needs /usr/bin/containerd and /bin/busybox";
    }
    char tmpl[] = "/tmp/berth-shim-it-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ns_ = "berthshim" + std::to_string(::getpid());
    rootfs_ = tmp_ + "/rootfs";
    fs::create_directories(rootfs_ + "/bin");
    for (const char* d : {"proc", "sys", "dev", "tmp", "etc"}) fs::create_directories(rootfs_ + "/" + d);
    fs::copy_file("/bin/busybox", rootfs_ + "/bin/busybox");
    for (const char* app : {"sh", "echo", "sleep", "cat", "true", "ls", "tty", "id", "ps", "dd",
                            "stty"}) {
      fs::create_symlink("busybox", rootfs_ + "/bin/" + app);
    }
    std::string shim = BERTH_SHIM_PATH;
    opts_.env["PATH"] = fs::path(shim).parent_path().string() + ":" + std::getenv("PATH");
    run_dir_ = tmp_ + "/shimrun";
    opts_.env["BERTH_SHIM_RUN_DIR"] = run_dir_;
    ASSERT_TRUE(daemon_.Start(tmp_ + "/containerd", opts_));
  }

  void TearDown() override {
    if (tmp_.empty()) return;
    for (const auto& id : ids_) {
      Ctr({"tasks", "kill", "-s", "SIGKILL", id});
      for (int i = 0; i < 50; ++i) {
        if (Ctr({"tasks", "delete", id}).exit_code == 0) break;
        if (Ctr({"tasks", "ls", "-q"}).out.find(id) == std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      Ctr({"containers", "delete", id});
    }
    daemon_.Stop();
    RemoveNamespaceCgroups(ns_);  // runc leaves the namespace's cgroup parents
    // The shim kept to BERTH_SHIM_RUN_DIR: no socket or runtime state under /run/berth.
    EXPECT_FALSE(fs::exists("/run/berth/runc/" + ns_));
    // Every shim removed its socket when it exited.
    std::error_code ec;
    if (fs::exists(run_dir_ + "/s")) {
      for (int i = 0; i < 50 && !fs::is_empty(run_dir_ + "/s", ec); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      EXPECT_TRUE(fs::is_empty(run_dir_ + "/s", ec)) << "shim sockets left in " << run_dir_;
    }
    fs::remove_all(tmp_, ec);
  }

  // The socket name the shim serving container `id` uses: sha256(<containerd address>/<ns>/<id>).
  std::string ShimSocketName(const std::string& id) {
    auto r = berth::testing::Run(
        {"sh", "-c", "printf %s \"$0\" | sha256sum", daemon_.socket() + "/" + ns_ + "/" + id});
    return r.out.substr(0, 64);
  }

  RunResult Ctr(const std::vector<std::string>& args, int timeout_s = 60) {
    return daemon_.Ctr(args, ns_, timeout_s);
  }
  // `ctr run --runtime io.containerd.berth.v2 [flags] --rootfs DIR id args...`
  RunResult RunCtr(const std::vector<std::string>& flags, const std::string& id,
                   const std::vector<std::string>& args) {
    ids_.push_back(id);
    std::vector<std::string> a = {"run", "--runtime", kRuntime, "--fifo-dir", tmp_ + "/fifo"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.insert(a.end(), {"--rootfs", rootfs_, id});
    a.insert(a.end(), args.begin(), args.end());
    return Ctr(a);
  }
  // The STATUS column of `ctr tasks ls` for `id` ("" if not listed).
  std::string TaskStatus(const std::string& id) {
    for (const auto& line : Lines(Ctr({"tasks", "ls"}).out)) {
      auto cells = Cells(line);
      if (cells.size() >= 3 && cells[0] == id) return cells[2];
    }
    return "";
  }
  // The PID column of `ctr tasks ls` for `id` (0 if not listed).
  pid_t TaskPid(const std::string& id) {
    for (const auto& line : Lines(Ctr({"tasks", "ls"}).out)) {
      auto cells = Cells(line);
      if (cells.size() >= 3 && cells[0] == id) return std::atoi(cells[1].c_str());
    }
    return 0;
  }
  bool WaitStatus(const std::string& id, const std::string& want, int tries = 100) {
    for (int i = 0; i < tries; ++i) {
      if (TaskStatus(id) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::string tmp_, ns_, rootfs_, run_dir_;
  ContainerdDaemon::Options opts_;
  ContainerdDaemon daemon_;
  std::vector<std::string> ids_;
};

TEST_F(ShimContainerdTest, RunRmEchoes) {
  auto r = RunCtr({"--rm"}, "echo1", {"/bin/echo", "hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}).out, "");
}

TEST_F(ShimContainerdTest, ExitCodePropagates) {
  auto r = RunCtr({"--rm"}, "exit7", {"/bin/sh", "-c", "exit 7"});
  EXPECT_EQ(r.exit_code, 7) << r.err << daemon_.Log();
}

TEST_F(ShimContainerdTest, DetachedExecPsPauseMetricsKill) {
  // PID 1 ignores SIGTERM unless it handles it: trap it.
  auto r = RunCtr({"-d"}, "det1",
                  {"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"});
  ASSERT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  ASSERT_TRUE(WaitStatus("det1", "RUNNING"));

  auto ex = Ctr({"tasks", "exec", "--fifo-dir", tmp_ + "/fifo", "--exec-id", "e1", "det1", "/bin/sh",
                 "-c", "echo from-exec; exit 3"});
  EXPECT_EQ(ex.out, "from-exec\n") << ex.err;
  EXPECT_EQ(ex.exit_code, 3) << ex.err;

  auto ps = Ctr({"tasks", "ps", "det1"});
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_GE(Lines(ps.out).size(), 2u) << ps.out;

  EXPECT_EQ(Ctr({"tasks", "pause", "det1"}).exit_code, 0);
  EXPECT_EQ(TaskStatus("det1"), "PAUSED");
  EXPECT_EQ(Ctr({"tasks", "resume", "det1"}).exit_code, 0);
  EXPECT_EQ(TaskStatus("det1"), "RUNNING");

  auto m = Ctr({"tasks", "metrics", "det1"});
  EXPECT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.out.find("memory"), std::string::npos) << m.out;

  EXPECT_EQ(Ctr({"tasks", "kill", "-s", "SIGTERM", "det1"}).exit_code, 0);
  EXPECT_TRUE(WaitStatus("det1", "STOPPED"));
  auto del = Ctr({"tasks", "delete", "det1"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(TaskStatus("det1"), "");
}

TEST_F(ShimContainerdTest, Terminal) {
  if (::access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "needs script(1)";
  ids_.push_back("tty1");
  std::string cmd = "ctr --address " + daemon_.socket() + " --namespace " + ns_ +
                    " run --runtime " + kRuntime + " --fifo-dir " + tmp_ + "/fifo -t --rm --rootfs " +
                    rootfs_ + " tty1 /bin/tty";
  auto r = berth::testing::Run({"script", "-qec", cmd, "/dev/null"}, "", 60);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
}

TEST_F(ShimContainerdTest, StdinThenCloseIO) {
  // ctr copies its stdin to the task's stdin FIFO and calls CloseIO at EOF: cat then ends.
  ids_.push_back("cio1");
  auto r = daemon_.Ctr({"run", "--runtime", kRuntime, "--fifo-dir", tmp_ + "/fifo", "--rm",
                        "--rootfs", rootfs_, "cio1", "/bin/cat"},
                       ns_, 60, "line one\nline two\n");
  EXPECT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  EXPECT_EQ(r.out, "line one\nline two\n");
}

TEST_F(ShimContainerdTest, ResizePty) {
  if (::access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "needs script(1)";
  ids_.push_back("tty2");
  // ctr -t sends its console's size through ResizePty (after Start: the process waits a
  // moment before it looks); the container's pty reports it.
  std::string cmd = "stty rows 37 cols 91; ctr --address " + daemon_.socket() + " --namespace " +
                    ns_ + " run --runtime " + kRuntime + " --fifo-dir " + tmp_ +
                    "/fifo -t --rm --rootfs " + rootfs_ + " tty2 /bin/sh -c 'sleep 1; stty size'";
  auto r = berth::testing::Run({"script", "-qec", cmd, "/dev/null"}, "", 60);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("37 91"), std::string::npos) << r.out;
}

TEST_F(ShimContainerdTest, UpdateResources) {
  auto r = RunCtr({"-d", "--memory-limit", "67108864"}, "upd1", {"/bin/sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  ASSERT_TRUE(WaitStatus("upd1", "RUNNING"));
  pid_t pid = TaskPid("upd1");
  ASSERT_GT(pid, 0);
  // The memory cgroup directory of the task (v1 "N:memory:/path" or v2 "0::/path").
  std::string dir;
  for (const auto& line : Lines(ReadFileBytes("/proc/" + std::to_string(pid) + "/cgroup"))) {
    auto c1 = line.find(':'), c2 = line.find(':', c1 + 1);
    std::string ctl = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
    if (ctl == "memory") dir = "/sys/fs/cgroup/memory" + path;
    if (ctl.empty() && dir.empty() && fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
      dir = "/sys/fs/cgroup" + path;
    }
  }
  ASSERT_FALSE(dir.empty());
  std::string file = fs::exists(dir + "/memory.limit_in_bytes") ? dir + "/memory.limit_in_bytes"
                                                                : dir + "/memory.max";
  EXPECT_EQ(ReadFileBytes(file), "67108864\n");
  // ctr 1.6 has no `tasks update`: Tasks.Update over gRPC, resources as containerd's typeurl
  // encodes specs.LinuxResources (JSON).
  auto channel = grpc::CreateChannel("unix:" + daemon_.socket(), grpc::InsecureChannelCredentials());
  auto stub = containerd::services::tasks::v1::Tasks::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", ns_);
  containerd::services::tasks::v1::UpdateTaskRequest req;
  req.set_container_id("upd1");
  req.mutable_resources()->set_type_url(
      "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources");
  req.mutable_resources()->set_value(R"({"memory":{"limit":134217728}})");
  google::protobuf::Empty resp;
  grpc::Status st = stub->Update(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message() << daemon_.Log();
  EXPECT_EQ(ReadFileBytes(file), "134217728\n");
}

TEST_F(ShimContainerdTest, OomEvent) {
  // `ctr events` from before the container starts; the container blows a 16 MiB limit.
  auto events = std::async(std::launch::async, [&] {
    return berth::testing::Run({"timeout", "15", "ctr", "--address", daemon_.socket(), "events"},
                               "", 30);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto r = RunCtr({"--rm", "--memory-limit", "16777216"}, "oom1",
                  {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  EXPECT_EQ(r.exit_code, 137) << r.out << r.err << daemon_.Log();
  // Let the events reach ctr, then end it.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  berth::testing::Run({"pkill", "-TERM", "-f", "ctr --address " + daemon_.socket() + " events"});
  auto ev = events.get();
  EXPECT_NE(ev.out.find("/tasks/oom"), std::string::npos) << ev.out;
  EXPECT_NE(ev.out.find("/tasks/exit"), std::string::npos) << ev.out;
}

TEST_F(ShimContainerdTest, CrunThroughRuntimeOptions) {
  if (::access("/usr/bin/crun", X_OK) != 0) GTEST_SKIP() << "needs crun";
  std::string cfg = tmp_ + "/crun.json";
  std::ofstream(cfg) << R"({"binary_name":"crun"})";
  auto r = RunCtr({"--rm", "--runtime-config-path", cfg}, "crun1", {"/bin/echo", "via-crun"});
  EXPECT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  EXPECT_EQ(r.out, "via-crun\n");
  // The bundle records the runtime binary the shim used.
  r = RunCtr({"-d", "--runtime-config-path", cfg}, "crun2", {"/bin/sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string bundle = daemon_.state() + "/io.containerd.runtime.v2.task/" + ns_ + "/crun2";
  EXPECT_EQ(ReadFileBytes(bundle + "/runtime"), "crun");
  EXPECT_TRUE(fs::exists(run_dir_ + "/runc/" + ns_ + "/crun2"));
}

TEST_F(ShimContainerdTest, ContainersSurviveContainerdRestart) {
  std::vector<std::string> ids = {"keep1", "keep2", "keep3"};
  for (const auto& id : ids) {
    auto r = RunCtr({"-d"}, id, {"/bin/sleep", "1000"});
    ASSERT_EQ(r.exit_code, 0) << r.err << daemon_.Log();
  }
  for (const auto& id : ids) ASSERT_TRUE(WaitStatus(id, "RUNNING"));
  // Each shim serves on a socket under BERTH_SHIM_RUN_DIR, none under /run/berth.
  for (const auto& id : ids) {
    std::string name = ShimSocketName(id);
    ASSERT_EQ(name.size(), 64u);
    EXPECT_TRUE(fs::exists(run_dir_ + "/s/" + name)) << id;
    EXPECT_FALSE(fs::exists("/run/berth/s/" + name)) << id;
    EXPECT_TRUE(fs::exists(run_dir_ + "/runc/" + ns_ + "/" + id)) << id;
  }
  daemon_.Kill();
  ASSERT_TRUE(daemon_.Start(tmp_ + "/containerd", opts_));
  for (const auto& id : ids) EXPECT_TRUE(WaitStatus(id, "RUNNING")) << id << "\n" << daemon_.Log();
  for (const auto& id : ids) {
    EXPECT_EQ(Ctr({"tasks", "kill", "-s", "SIGKILL", id}).exit_code, 0);
    EXPECT_TRUE(WaitStatus(id, "STOPPED"));
    EXPECT_EQ(Ctr({"tasks", "delete", id}).exit_code, 0);
  }
}

}  // namespace
}  // namespace berth::testing
