// The reaper: exit statuses, subreaper orphans, invocations never losing their exit to the
// waitpid(-1) loop, and what a spawned child inherits (CVE-2024-21626: only what we pass).
#include "oci/reaper.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "../common/wait.h"
#include "test_util.h"

namespace berth::oci {
namespace {

using testing::Env;
using testing::RunHost;

TEST(OciReaper, ExitStatuses) {
  EXPECT_EQ(RunHost({"sh", "-c", "exit 7"}).exit.status, 7);
  EXPECT_EQ(RunHost({"sh", "-c", "kill -TERM $$"}).exit.status, 143);
  EXPECT_EQ(RunHost({"sh", "-c", "kill -KILL $$"}).exit.status, 137);
  EXPECT_EQ(RunHost({"true"}).exit.status, 0);
}

TEST(OciReaper, IsSubreaper) {
  Env();
  int v = 0;
  ASSERT_EQ(::prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0), 0);
  EXPECT_EQ(v, 1);
}

TEST(OciReaper, OnlyOnePerProcess) {
  Env();
  auto second = Reaper::Create(Env()->loop());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), Code::kFailedPrecondition);
}

TEST(OciReaper, CapturesOutputAndFeedsStdin) {
  CommandOptions o;
  o.spec.argv = {"sh", "-c", "cat; echo err >&2; exit 3"};
  o.stdin_data = std::string("from memfd\n");
  auto r = RunCommand(*Env()->reaper(), o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->exit.status, 3);
  EXPECT_EQ(r->out, "from memfd\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(OciReaper, TimeoutKills) {
  CommandOptions o;
  o.spec.argv = {"sleep", "1000"};  // far past the wait below: only the kill ends it in time
  o.timeout = std::chrono::milliseconds(300);
  decltype(RunCommand(*Env()->reaper(), o)) r;
  berth::testing::FinishesWithin([&] { r = RunCommand(*Env()->reaper(), o); }, "RunCommand");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
}

// A background grandchild keeps the output pipe open: the call still returns at the exit.
TEST(OciReaper, DoesNotWaitForGrandchildHoldingOutput) {
  // The grandchild outlives the wait below by far: returning at all proves the point.
  CommandResult r;
  berth::testing::FinishesWithin(
      [&] { r = RunHost({"sh", "-c", "echo started; sleep 1000 & echo $!; exit 0"}); },
      "RunHost with a grandchild holding stdout");
  EXPECT_EQ(r.exit.status, 0);
  ASSERT_TRUE(r.out.starts_with("started\n")) << r.out;
  ::kill(std::stoi(r.out.substr(8)), SIGKILL);
}

TEST(OciReaper, MissingProgramIsNotFound) {
  SpawnSpec s;
  s.argv = {"/nonexistent/berth-no-such-binary"};
  auto r = Env()->reaper()->Spawn(s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

// Orphans reparented to us (container processes after `runc create` exits) reach subscribers;
// a pid learned late (from a pid file) still finds its exit through Watch().
TEST(OciReaper, OrphanExitsReachSubscribersAndLateWatchers) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Exit> seen;
  uint64_t sub = Env()->reaper()->Subscribe([&](const Exit& e) {
    std::lock_guard l(mu);
    seen.push_back(e);
    cv.notify_all();
  });
  // The grandchild outlives its parent, so it is reparented to us.
  auto r = RunHost({"sh", "-c", "sh -c 'sleep 0.3; exit 42' & echo $!"});
  pid_t orphan = std::atoi(r.out.c_str());
  ASSERT_GT(orphan, 0);
  {
    std::unique_lock l(mu);
    EXPECT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] {
      return std::any_of(seen.begin(), seen.end(), [&](auto& e) { return e.pid == orphan; });
    }));
    for (auto& e : seen) {
      if (e.pid == orphan) {
        EXPECT_EQ(e.status, 42);
      }
    }
  }
  Env()->reaper()->Unsubscribe(sub);
  auto late = Env()->reaper()->Watch(orphan);
  auto e = late->WaitFor(std::chrono::seconds(1));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->status, 42);
}

// Many concurrent invocations while orphans exit all around them: every invoker gets its own
// exit status, none is stolen by the reap loop.
TEST(OciReaper, ConcurrentInvocationsKeepTheirExits) {
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        int code = (t * 25 + i) % 100;
        CommandOptions o;
        o.spec.argv = {"sh", "-c", "(exit 9) & exit " + std::to_string(code)};
        o.timeout = std::chrono::seconds(30);
        auto r = RunCommand(*Env()->reaper(), o);
        if (!r || r->exit.status != code) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// CVE-2024-21626: an fd the parent opened without O_CLOEXEC must not reach the child; the child
// gets exactly the fds it was given.
TEST(OciReaper, ChildGetsOnlyTheFdsItWasGiven) {
  constexpr int kLeak = 50;
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  ASSERT_EQ(::dup2(raw, kLeak), kLeak);  // dup2's target is deliberately not close-on-exec
  ::close(raw);
  int pass[2];
  ASSERT_EQ(::pipe2(pass, O_CLOEXEC), 0);
  CommandOptions o;
  o.spec.argv = {"sh", "-c", "cd /proc/self/fd && echo *"};
  o.spec.fds = {{7, pass[0]}};
  auto r = RunCommand(*Env()->reaper(), o);
  ::close(kLeak);
  ::close(pass[0]);
  ::close(pass[1]);
  ASSERT_TRUE(r.has_value());
  std::set<int> fds;
  std::istringstream in(r->out);
  for (int fd; in >> fd;) fds.insert(fd);
  for (int want : {0, 1, 2, 7}) EXPECT_TRUE(fds.contains(want)) << r->out;
  EXPECT_FALSE(fds.contains(kLeak)) << r->out;
  // Besides those, only the directory the shell's glob is reading.
  EXPECT_LE(fds.size(), 5u) << r->out;
}

// Every fd this library opens is O_CLOEXEC (T28). The loop, reaper and watchers hold anon
// inodes; a test runner's inherited pipes are not ours to judge.
TEST(OciReaper, OwnFdsAreCloexec) {
  Env();
  int checked = 0;
  for (int fd : testing::OpenFds(::getpid())) {
    char link[256] = {};
    if (::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1) < 0) {
      continue;
    }
    if (!std::string_view(link).starts_with("anon_inode:")) continue;
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) continue;
    ++checked;
    EXPECT_TRUE(flags & FD_CLOEXEC) << "fd " << fd << " -> " << link << " lacks FD_CLOEXEC";
  }
  EXPECT_GE(checked, 4);  // epoll, eventfd, signalfd, timerfd
}

TEST(OciReaper, ResetsSignalMaskAndIgnoredSignals) {
  ::signal(SIGUSR1, SIG_IGN);
  auto r = RunHost({"sh", "-c", "grep -E '^(SigBlk|SigIgn)' /proc/self/status"});
  ::signal(SIGUSR1, SIG_DFL);
  EXPECT_NE(r.out.find("SigBlk:\t0000000000000000"), std::string::npos) << r.out;
  // The shell ignores nothing by itself; SIGUSR1 (bit 9) must not be inherited as ignored.
  auto pos = r.out.find("SigIgn:\t");
  ASSERT_NE(pos, std::string::npos);
  uint64_t ign = std::stoull(r.out.substr(pos + 8, 16), nullptr, 16);
  EXPECT_EQ(ign & (1ULL << (SIGUSR1 - 1)), 0u) << r.out;
}

// The hybrid-cgroup fix: the child runs in a private mount namespace without the mount, and
// the host's mount table is untouched.
TEST(OciReaper, HideMountsIsPrivateToTheChild) {
  const CgroupLayout& l = Env()->cgroups();
  if (l.mode != CgroupMode::kHybrid) GTEST_SKIP() << "host has no hybrid cgroup2 mount";
  CommandOptions o;
  o.spec.argv = {"cat", "/proc/self/mountinfo"};
  o.spec.hide_mounts = {l.unified_mountpoint};
  auto r = RunCommand(*Env()->reaper(), o);
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->out.find(" " + l.unified_mountpoint + " "), std::string::npos);
  EXPECT_NE(testing::Slurp("/proc/self/mountinfo").find(" " + l.unified_mountpoint + " "),
            std::string::npos);
}

}  // namespace
}  // namespace berth::oci
