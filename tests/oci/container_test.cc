// Real containers with runc and crun: a busybox bundle, stdio through FIFOs, a pty, exits,
// signals, pause/resume, exec, stats, OOM. Root only; every test cleans up its containers
// (Container's destructor force-deletes), cgroups and temp dirs.
#include "oci/container.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "../common/wait.h"
#include "test_util.h"

namespace berth::oci {
namespace {

using namespace std::chrono_literals;
using testing::BundleOptions;
using testing::Env;
using testing::MakeFifo;
using testing::OpenFifoReader;
using testing::ReadToEof;
using testing::ReadUntil;
using testing::TempDir;

class OciContainer : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (LookPath(GetParam()).empty()) GTEST_SKIP() << GetParam() << " is not installed";
    if (LookPath("runc").empty()) GTEST_SKIP() << "runc (for `runc spec`) is not installed";
    cgroup_parent_ = "berth-rt-" + std::to_string(::getpid());
    RuntimeOptions o;
    o.binary = GetParam();
    o.root = tmp_ / "state";
    o.log_path = tmp_ / "log.json";
    o.temp_dir = tmp_.path();
    auto rt = CliRuntime::Create(Env()->reaper(), o, Env()->cgroups());
    ASSERT_TRUE(rt.has_value()) << rt.error().ToString();
    runtime_ = std::move(*rt);
  }

  void TearDown() override {
    containers_.clear();  // force-deletes whatever a failed test left
    if (!cgroup_parent_.empty()) testing::RemoveCgroupTree(cgroup_parent_);
  }

  // Makes bundle `id` and creates the container (not started).
  Container* Create(const std::string& id, BundleOptions b, StdioSpec stdio = {},
                    ContainerEvents events = {}) {
    std::string bundle = tmp_ / ("bundle-" + id);
    if (b.cgroups_path.empty()) b.cgroups_path = "/" + cgroup_parent_ + "/" + id;
    Status st = testing::MakeBundle(bundle, b);
    EXPECT_TRUE(st.ok()) << st.ToString();
    ContainerConfig cfg;
    cfg.id = id;
    cfg.bundle = bundle;
    cfg.ns = "testns";
    cfg.stdio = stdio;
    auto c = Container::Create(Env(), runtime_, cfg, std::move(events));
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    if (!c) return nullptr;
    containers_.push_back(std::move(*c));
    return containers_.back().get();
  }

  Exit WaitExit(Container* c, const std::string& exec_id = "") {
    auto e = c->Wait(exec_id, 30s);
    EXPECT_TRUE(e.has_value()) << e.error().ToString();
    return e.value_or(Exit{0, -1, {}});
  }

  std::string ExecSpec(std::vector<std::string> args) {
    nlohmann::json p = {
        {"args", args}, {"cwd", "/"}, {"env", {"PATH=/bin"}}, {"user", {{"uid", 0}, {"gid", 0}}}};
    return p.dump();
  }

  TempDir tmp_;
  std::string cgroup_parent_;
  std::shared_ptr<OciRuntime> runtime_;
  std::vector<std::unique_ptr<Container>> containers_;
};

TEST_P(OciContainer, EchoToStdoutFifo) {
  std::string out = MakeFifo(tmp_ / "out");
  UniqueFd reader = OpenFifoReader(out);
  Container* c = Create("echo", {.args = {"echo", "hello from " + GetParam()}}, {"", out, ""});
  ASSERT_TRUE(c);
  auto st = c->State("");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->status, ProcessStatus::kCreated);
  EXPECT_GT(st->pid, 0);
  ASSERT_TRUE(c->Start("").has_value());
  EXPECT_EQ(WaitExit(c).status, 0);
  EXPECT_EQ(ReadToEof(reader.get()), "hello from " + GetParam() + "\n");
  auto d = c->Delete("");
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->status, 0);
  EXPECT_EQ(runtime_->State("echo").error().code(), Code::kNotFound);
}

TEST_P(OciContainer, ExitCodePropagates) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, Exit>> exits;
  ContainerEvents ev;
  ev.on_exit = [&](const std::string& id, const Exit& e) {
    std::lock_guard l(mu);
    exits.emplace_back(id, e);
    cv.notify_all();
  };
  Container* c = Create("exit7", {.args = {"sh", "-c", "exit 7"}}, {}, ev);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  Exit e = WaitExit(c);
  EXPECT_EQ(e.status, 7);
  EXPECT_EQ(e.pid, c->pid());
  auto st = c->State("");
  EXPECT_EQ(st->status, ProcessStatus::kStopped);
  EXPECT_EQ(st->exit_status, 7);
  {
    // As in containerd, Wait may return just before the exit event is out.
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, 5s, [&] { return !exits.empty(); }));
    ASSERT_EQ(exits.size(), 1u);
    EXPECT_EQ(exits[0].first, "");
    EXPECT_EQ(exits[0].second.status, 7);
  }
  EXPECT_EQ(c->Kill("", SIGTERM, false).code(), Code::kNotFound);
  EXPECT_EQ(c->Delete("")->status, 7);
}

// Without a pid namespace the init is an ordinary process: SIGTERM kills it (143 = 128+15), and
// the processes it leaves behind are killed too (containerd: ShouldKillAllOnExit).
TEST_P(OciContainer, SigtermGives143AndKillsTheRest) {
  Container* c = Create(
      "term", {.args = {"sh", "-c", "sleep 1000 & exec sleep 1000"}, .pid_namespace = false});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  std::vector<ProcessInfo> pids;
  berth::testing::WaitFor([&] {
    pids = c->Pids().value_or(std::vector<ProcessInfo>{});
    return pids.size() >= 2;
  });
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_EQ(c->Delete("").error().code(), Code::kFailedPrecondition);  // still running
  ASSERT_TRUE(c->Kill("", SIGTERM, false).ok());
  EXPECT_EQ(WaitExit(c).status, 143);
  for (auto& p : pids) {
    if (p.pid == c->pid()) continue;
    EXPECT_TRUE(berth::testing::WaitFor([&] { return ::kill(p.pid, 0) != 0; }))
        << "background pid " << p.pid << " survived its init";
  }
  ASSERT_TRUE(c->Delete("").has_value());
}

TEST_P(OciContainer, PauseResumeAndPs) {
  Container* c = Create("pause", {.args = {"sh", "-c", "sleep 1000 & sleep 1000 & wait"}});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  std::vector<ProcessInfo> pids;
  berth::testing::WaitFor([&] {
    pids = c->Pids().value_or(std::vector<ProcessInfo>{});
    return pids.size() >= 3;
  });
  ASSERT_EQ(pids.size(), 3u);  // sh and two sleeps
  EXPECT_TRUE(std::any_of(pids.begin(), pids.end(), [&](auto& p) { return p.pid == c->pid(); }));

  ASSERT_TRUE(c->Pause().ok());
  EXPECT_EQ(c->State("")->status, ProcessStatus::kPaused);
  // crun 1.8 on a v1 freezer can return from `pause` while the cgroup is still FREEZING (its
  // `state` then says "running"); the kernel finishes the job within moments.
  std::string rs;
  berth::testing::WaitFor([&] { return (rs = runtime_->State("pause")->status) == "paused"; });
  EXPECT_EQ(rs, "paused");
  EXPECT_EQ(c->Pause().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(c->Resume().ok());
  EXPECT_EQ(c->State("")->status, ProcessStatus::kRunning);
  EXPECT_EQ(runtime_->State("pause")->status, "running");
  ASSERT_TRUE(c->Kill("", SIGKILL, true).ok());
  EXPECT_EQ(WaitExit(c).status, 137);
  ASSERT_TRUE(c->Delete("").has_value());
}

TEST_P(OciContainer, ExecSecondProcess) {
  Container* c = Create("exec", {.args = {"sleep", "1000"}});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  std::string out = MakeFifo(tmp_ / "exec-out");
  UniqueFd reader = OpenFifoReader(out);
  ASSERT_TRUE(c->Exec("e1", ExecSpec({"sh", "-c", "echo exec-out; exit 5"}), {"", out, ""}).ok());
  EXPECT_EQ(c->Exec("e1", ExecSpec({"true"}), {}).code(), Code::kAlreadyExists);
  EXPECT_EQ(c->Exec("../x", ExecSpec({"true"}), {}).code(), Code::kInvalidArgument);
  EXPECT_EQ(c->State("e1")->status, ProcessStatus::kCreated);
  EXPECT_EQ(c->Kill("e1", SIGKILL, false).code(), Code::kFailedPrecondition);
  auto pid = c->Start("e1");
  ASSERT_TRUE(pid.has_value()) << pid.error().ToString();
  EXPECT_GT(*pid, 0);
  Exit e = WaitExit(c, "e1");
  EXPECT_EQ(e.status, 5);
  EXPECT_EQ(e.pid, *pid);
  EXPECT_EQ(ReadToEof(reader.get()), "exec-out\n");
  ASSERT_TRUE(c->Delete("e1").has_value());
  EXPECT_EQ(c->State("e1").error().code(), Code::kNotFound);

  // A long-running exec, killed with a signal.
  ASSERT_TRUE(c->Exec("e2", ExecSpec({"sleep", "1000"}), {}).ok());
  ASSERT_TRUE(c->Start("e2").has_value());
  ASSERT_TRUE(c->Kill("e2", SIGTERM, false).ok());
  EXPECT_EQ(WaitExit(c, "e2").status, 143);
  ASSERT_TRUE(c->Delete("e2").has_value());
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  EXPECT_EQ(WaitExit(c).status, 137);
}

TEST_P(OciContainer, TerminalThroughConsoleSocket) {
  std::string in = MakeFifo(tmp_ / "tty-in"), out = MakeFifo(tmp_ / "tty-out");
  UniqueFd reader = OpenFifoReader(out);
  Container* c = Create("tty", {.args = {"sh"}, .terminal = true}, {in, out, "", true});
  ASSERT_TRUE(c);
  UniqueFd writer(::open(in.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(writer.valid());
  ASSERT_TRUE(c->Start("").has_value());
  ASSERT_TRUE(c->ResizePty("", 123, 45).ok());
  ASSERT_TRUE(testing::WriteString(writer.get(), "echo tty-$((40+2)); stty size\n"));
  std::string text = ReadUntil(reader.get(), [](auto& d) {
    return d.find("tty-42") != d.npos && d.find("45 123") != d.npos;
  });
  EXPECT_NE(text.find("tty-42"), std::string::npos) << text;
  EXPECT_NE(text.find("45 123"), std::string::npos) << text;
  ASSERT_TRUE(testing::WriteString(writer.get(), "exit 3\n"));
  EXPECT_EQ(WaitExit(c).status, 3);
  ASSERT_TRUE(c->Delete("").has_value());
}

TEST_P(OciContainer, StdinAndCloseIO) {
  std::string in = MakeFifo(tmp_ / "in"), out = MakeFifo(tmp_ / "out");
  UniqueFd reader = OpenFifoReader(out);
  Container* c = Create("cat", {.args = {"cat"}}, {in, out, ""});
  ASSERT_TRUE(c);
  UniqueFd writer(::open(in.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(c->Start("").has_value());
  ASSERT_TRUE(testing::WriteString(writer.get(), "ping\n"));
  EXPECT_EQ(ReadUntil(reader.get(), [](auto& d) { return d == "ping\n"; }), "ping\n");
  writer.reset();
  ASSERT_TRUE(c->CloseIO("").ok());
  EXPECT_EQ(WaitExit(c).status, 0);
  ASSERT_TRUE(c->Delete("").has_value());
}

TEST_P(OciContainer, FileLogUri) {
  std::string log = tmp_ / "logs/c.log";
  std::string uri = "file://" + log;
  Container* c =
      Create("filelog", {.args = {"sh", "-c", "echo line-out; echo line-err >&2"}}, {"", uri, uri});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  EXPECT_EQ(WaitExit(c).status, 0);
  ASSERT_TRUE(c->Delete("").has_value());  // drains the copies before closing
  std::string text = testing::Slurp(log);
  EXPECT_NE(text.find("line-out\n"), std::string::npos) << text;
  EXPECT_NE(text.find("line-err\n"), std::string::npos) << text;
}

TEST_P(OciContainer, StatsAndUpdate) {
  Container* c = Create("stats", {.args = {"sleep", "1000"}, .memory_limit = 256 << 20});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  // The cgroup's counters fill in as the process starts: wait for memory to show up.
  auto st = c->Stats();
  berth::testing::WaitFor([&] {
    st = c->Stats();
    return st.has_value() && st->memory.usage > 0 && st->pids.current >= 1;
  });
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_GT(st->memory.usage, 0u);
  EXPECT_EQ(st->memory.limit, 256u << 20);
  EXPECT_GE(st->pids.current, 1u);
  EXPECT_FALSE(st->memory.stat.empty());
  if (runtime_->info().name == "runc") {
    auto ev = runtime_->Stats("stats");
    ASSERT_TRUE(ev.has_value()) << ev.error().ToString();
    EXPECT_NE(ev->find("\"memory\""), std::string::npos);
  }
  Status up = c->Update(R"({"memory":{"limit":134217728,"swap":134217728}})");
  ASSERT_TRUE(up.ok()) << up.ToString();
  EXPECT_EQ(c->Stats()->memory.limit, 128u << 20);
  EXPECT_EQ(c->Update("not json").code(), Code::kInvalidArgument);
  ASSERT_TRUE(c->Kill("", SIGKILL, true).ok());
  WaitExit(c);
}

TEST_P(OciContainer, OomEvent) {
  std::mutex mu;
  std::condition_variable cv;
  int ooms = 0;
  ContainerEvents ev;
  ev.on_oom = [&] {
    std::lock_guard l(mu);
    ++ooms;
    cv.notify_all();
  };
  // Doubling a shell variable outgrows 16 MiB within a fraction of a second.
  Container* c = Create(
      "oom", {.args = {"sh", "-c", "x=a; while :; do x=$x$x; done"}, .memory_limit = 16 << 20}, {},
      ev);
  ASSERT_TRUE(c);
  if (c->cgroup().DirFor("memory").empty()) GTEST_SKIP() << "no memory cgroup on this host";
  ASSERT_TRUE(c->Start("").has_value());
  auto e = c->Wait("", 60s);
  ASSERT_TRUE(e.has_value()) << "not OOM-killed within 60 s";
  if (e->status != 137) {
    GTEST_SKIP() << "the kernel did not OOM-kill at a 16 MiB limit (exit " << e->status << ")";
  }
  std::unique_lock l(mu);
  EXPECT_TRUE(cv.wait_for(l, 10s, [&] { return ooms > 0; }))
      << "OOM kill (exit 137) without an OOM event; memory cgroup " << c->cgroup().DirFor("memory");
}

// CVE-2024-21626: the container's init holds only 0, 1 and 2 — nothing of ours leaks in,
// even an fd this process opened without O_CLOEXEC.
TEST_P(OciContainer, ContainerHoldsOnlyStdio) {
  constexpr int kLeak = 60;
  int raw = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_EQ(::dup2(raw, kLeak), kLeak);  // not close-on-exec, like a leaked cgroup dir fd
  ::close(raw);
  std::set<int> before = testing::OpenFds(::getpid());
  std::string out = MakeFifo(tmp_ / "out");
  UniqueFd reader = OpenFifoReader(out);
  Container* c = Create("fds", {.args = {"sleep", "1000"}}, {"", out, ""});
  ::close(kLeak);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Start("").has_value());
  // `start` returns once the runtime released its init; the exec of `sleep` follows shortly.
  std::string comm_path = "/proc/" + std::to_string(c->pid()) + "/comm";
  berth::testing::WaitFor([&] { return testing::Slurp(comm_path) == "sleep\n"; });
  ASSERT_EQ(testing::Slurp(comm_path), "sleep\n");
  EXPECT_EQ(testing::OpenFds(c->pid()), (std::set<int>{0, 1, 2}));
  // And every fd the library opened for this container is close-on-exec.
  for (int fd : testing::OpenFds(::getpid())) {
    if (before.contains(fd)) continue;
    int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) {
      EXPECT_TRUE(flags & FD_CLOEXEC) << "fd " << fd;
    }
  }
  ASSERT_TRUE(c->Kill("", SIGKILL, false).ok());
  WaitExit(c);
}

TEST_P(OciContainer, RuntimeErrorsCarryTheRuntimeMessage) {
  Container* c = Create("dup", {.args = {"sleep", "1000"}});
  ASSERT_TRUE(c);
  // Creating the same id again: the runtime's own log line becomes the message.
  std::string bundle = tmp_ / "bundle-dup";
  ContainerConfig cfg{"dup", bundle, "testns", {}};
  auto again = Container::Create(Env(), runtime_, cfg);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists) << again.error().ToString();
  EXPECT_NE(again.error().message().find("exists"), std::string::npos) << again.error().ToString();
  // The first container is untouched by the failed duplicate.
  EXPECT_EQ(runtime_->State("dup")->status, "created");
  EXPECT_EQ(runtime_->State("nope").error().code(), Code::kNotFound);
  EXPECT_EQ(runtime_->Kill("nope", SIGKILL, false).code(), Code::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Runtimes, OciContainer, ::testing::Values("runc", "crun"),
                         [](const auto& param_info) { return param_info.param; });

// crun on this host's hybrid layout: plain crun refuses, with a clear message and no hang;
// the private-mount-namespace fix makes it work (the tests above).
TEST(OciCrunHybrid, PlainCrunFailsClearly) {
  if (::geteuid() != 0 || LookPath("crun").empty() || LookPath("runc").empty()) {
    GTEST_SKIP() << "needs root, crun and runc";
  }
  if (!Env()->cgroups().HybridWithUnifiedControllers()) {
    GTEST_SKIP() << "host is not a hybrid cgroup layout with controllers in cgroup2";
  }
  TempDir tmp;
  RuntimeOptions o;
  o.binary = "crun";
  o.root = tmp / "state";
  o.log_path = tmp / "log.json";
  o.hybrid_fix = HybridCgroupFix::kOff;
  o.timeout = 60s;
  auto rt = CliRuntime::Create(Env()->reaper(), o, Env()->cgroups());
  ASSERT_TRUE(rt.has_value());
  EXPECT_FALSE((*rt)->info().hides_unified_cgroup);
  std::string parent = "berth-rt-" + std::to_string(::getpid()) + "-plain";
  ASSERT_TRUE(
      testing::MakeBundle(tmp / "b", {.args = {"true"}, .cgroups_path = "/" + parent + "/p"}).ok());
  auto c = Container::Create(Env(), std::shared_ptr<OciRuntime>(std::move(*rt)),
                             {"plain", tmp / "b", "testns", {}});
  ASSERT_FALSE(c.has_value()) << "crun unexpectedly worked on a hybrid host";
  EXPECT_NE(c.error().message().find("hybrid"), std::string::npos) << c.error().ToString();
  testing::RemoveCgroupTree(parent);

  RuntimeOptions fixed = o;
  fixed.hybrid_fix = HybridCgroupFix::kAuto;
  auto rt2 = CliRuntime::Create(Env()->reaper(), fixed, Env()->cgroups());
  ASSERT_TRUE(rt2.has_value());
  EXPECT_TRUE((*rt2)->info().hides_unified_cgroup);
}

}  // namespace
}  // namespace berth::oci
