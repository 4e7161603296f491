// Parsers and file readers of the OCI runtime core, fed with captured or fake kernel files.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "oci/cgroup.h"
#include "oci/oci_runtime.h"
#include "oci/process_io.h"
#include "oci/reaper.h"
#include "test_util.h"

namespace berth::oci {
namespace {

using testing::TempDir;

// This build host: v1 hierarchies plus a cgroup2 mount that holds hugetlb.
constexpr char kHybridMountinfo[] =
    "23 1 253:1 / / rw,relatime - ext4 /dev/vda rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "42 35 0:32 / /var/lib/x/memory\\040copy rw - cgroup cgroup rw,memory\n";

TEST(OciParse, HybridLayout) {
  auto l = ParseCgroupLayout(kHybridMountinfo);
  ASSERT_TRUE(l.has_value()) << l.error().ToString();
  EXPECT_EQ(l->mode, CgroupMode::kHybrid);
  EXPECT_EQ(l->unified_mountpoint, "/sys/fs/cgroup/unified");
  ASSERT_EQ(l->v1.size(), 5u);  // the bind mount of memory is not a second hierarchy
  EXPECT_EQ(l->v1[2].mountpoint, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l->v1[4].controllers, std::vector<std::string>{"name=systemd"});
  EXPECT_FALSE(l->HybridWithUnifiedControllers());  // controllers come from a file read
  l->unified_controllers = {"hugetlb"};
  EXPECT_TRUE(l->HybridWithUnifiedControllers());
}

TEST(OciParse, UnifiedAndLegacyLayouts) {
  auto u =
      ParseCgroupLayout("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->mode, CgroupMode::kUnified);
  auto l = ParseCgroupLayout(
      "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n");
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->mode, CgroupMode::kLegacy);
  EXPECT_EQ(l->v1[1].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ(ParseCgroupLayout("23 1 253:1 / / rw - ext4 /dev/vda rw\n").error().code(),
            Code::kNotFound);
}

TEST(OciParse, ResolveProcCgroup) {
  auto l = ParseCgroupLayout(kHybridMountinfo);
  ASSERT_TRUE(l.has_value());
  CgroupPaths p = ResolveCgroupPaths(*l,
                                     "9:name=systemd:/a/b\n"
                                     "4:memory:/a/b\n"
                                     "2:cpuacct:/a/b\n"
                                     "0::/a/b\n");
  EXPECT_EQ(p.v1["memory"], "/sys/fs/cgroup/memory/a/b");
  EXPECT_EQ(p.v1["name=systemd"], "/sys/fs/cgroup/systemd/a/b");
  EXPECT_EQ(p.unified, "/sys/fs/cgroup/unified/a/b");
  EXPECT_EQ(p.DirFor("cpuacct"), "/sys/fs/cgroup/cpuacct/a/b");
  EXPECT_EQ(p.DirFor("io"), "/sys/fs/cgroup/unified/a/b");  // not in v1 → cgroup2
  EXPECT_TRUE(p.IsV2("hugetlb"));

  // Inside a cgroup namespace the mount root is not "/".
  auto ns =
      ParseCgroupLayout("35 31 0:32 /outer /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  ASSERT_TRUE(ns.has_value());
  EXPECT_EQ(ResolveCgroupPaths(*ns, "4:memory:/outer/c1\n").v1["memory"],
            "/sys/fs/cgroup/memory/c1");
}

TEST(OciParse, FlatKeyed) {
  auto m = ParseFlatKeyed("low 0\nhigh 3\nmax 5\noom 2\noom_kill 1\nbogus\nbad x\n");
  EXPECT_EQ(m.size(), 5u);
  EXPECT_EQ(m["oom_kill"], 1u);
  EXPECT_EQ(ParseFlatKeyed("limit max\n")["limit"], UINT64_MAX);
}

TEST(OciParse, ExitStatus) {
  EXPECT_EQ(ExitStatusFromWaitStatus(7 << 8), 7);          // exited 7
  EXPECT_EQ(ExitStatusFromWaitStatus(SIGTERM), 128 + 15);  // killed by SIGTERM
  EXPECT_EQ(ExitStatusFromWaitStatus(SIGKILL), 137);
}

TEST(OciParse, RuntimeLogLastError) {
  std::string log =
      "{\"level\":\"info\",\"msg\":\"hello\",\"time\":\"2024-01-01T00:00:00Z\"}\n"
      "{\"level\":\"error\",\"msg\":\"first failure\",\"time\":\"x\"}\n"
      "not json at all\n"
      "{\"msg\": \"container `c1` already exists \", \"level\": \"error\", \"time\": \"y\"}\n"
      "{\"level\":\"warning\",\"msg\":\"later warning\"}\n";
  EXPECT_EQ(LastRuntimeError(log), "container `c1` already exists");
  EXPECT_EQ(LastRuntimeError(""), "");
}

TEST(OciParse, StdioUris) {
  auto f = ParseStdioUri("/run/x/stdout");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->scheme, "fifo");
  EXPECT_EQ(f->path, "/run/x/stdout");
  EXPECT_EQ(ParseStdioUri("fifo:///run/y")->path, "/run/y");
  auto file = ParseStdioUri("file:///var/log/a%20b.log");
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->scheme, "file");
  EXPECT_EQ(file->path, "/var/log/a b.log");
  auto bin = ParseStdioUri("binary:///usr/bin/logger?id=abc&debug&dir=%2Ftmp");
  ASSERT_TRUE(bin.has_value());
  EXPECT_EQ(bin->path, "/usr/bin/logger");
  EXPECT_EQ(bin->args, (std::vector<std::string>{"id", "abc", "debug", "dir", "/tmp"}));
  EXPECT_EQ(ParseStdioUri("ftp://x/y").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseStdioUri("file://nopath").error().code(), Code::kInvalidArgument);
}

void Put(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(OciCgroupStats, V1FromFakeHierarchies) {
  TempDir t;
  CgroupPaths p;
  p.v1["memory"] = t / "memory";
  p.v1["cpuacct"] = t / "cpuacct";
  p.v1["cpu"] = t / "cpu";
  p.v1["pids"] = t / "pids";
  p.v1["blkio"] = t / "blkio";
  Put(t / "memory/memory.usage_in_bytes", "4096\n");
  Put(t / "memory/memory.limit_in_bytes", "9223372036854771712\n");
  Put(t / "memory/memory.max_usage_in_bytes", "8192\n");
  Put(t / "memory/memory.failcnt", "3\n");
  Put(t / "memory/memory.stat", "cache 100\nrss 200\ntotal_rss 300\n");
  Put(t / "memory/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  Put(t / "cpuacct/cpuacct.usage", "5000000\n");
  Put(t / "cpuacct/cpuacct.stat", "user 10\nsystem 20\n");
  Put(t / "cpuacct/cpuacct.usage_percpu", "3000000 2000000 \n");
  Put(t / "cpu/cpu.stat", "nr_periods 4\nnr_throttled 1\nthrottled_time 77\n");
  Put(t / "pids/pids.current", "2\n");
  Put(t / "pids/pids.max", "max\n");
  Put(t / "blkio/blkio.throttle.io_service_bytes",
      "8:0 Read 100\n8:0 Write 50\n8:16 Read 1\n8:0 Total 150\nTotal 151\n");
  auto st = ReadCgroupStats(p);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_FALSE(st->memory_v2);
  EXPECT_EQ(st->memory.usage, 4096u);
  EXPECT_EQ(st->memory.limit, 9223372036854771712u);
  EXPECT_EQ(st->memory.max_usage, 8192u);
  EXPECT_EQ(st->memory.failcnt, 3u);
  EXPECT_EQ(st->memory.stat.at("total_rss"), 300u);
  EXPECT_EQ(st->memory.events.at("oom_kill"), 2u);
  EXPECT_EQ(st->cpu.usage_ns, 5000000u);
  long hz = ::sysconf(_SC_CLK_TCK);
  EXPECT_EQ(st->cpu.user_ns, 10u * (1000000000u / hz));
  EXPECT_EQ(st->cpu.per_cpu_ns, (std::vector<uint64_t>{3000000, 2000000}));
  EXPECT_EQ(st->cpu.throttled_ns, 77u);
  EXPECT_EQ(st->pids.current, 2u);
  EXPECT_EQ(st->pids.limit, 0u);  // "max" = unlimited
  EXPECT_EQ(st->io.read_bytes, 101u);
  EXPECT_EQ(st->io.write_bytes, 50u);
}

TEST(OciCgroupStats, V2FromFakeDir) {
  TempDir t;
  CgroupPaths p;
  p.unified = t / "c";
  Put(t / "c/memory.current", "12345\n");
  Put(t / "c/memory.max", "max\n");
  Put(t / "c/memory.swap.current", "0\n");
  Put(t / "c/memory.stat", "anon 10\nfile 20\n");
  Put(t / "c/memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n");
  Put(t / "c/cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 0\n");
  Put(t / "c/pids.current", "3\n");
  Put(t / "c/pids.max", "100\n");
  Put(t / "c/io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
  auto st = ReadCgroupStats(p);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_TRUE(st->memory_v2);
  EXPECT_EQ(st->memory.usage, 12345u);
  EXPECT_EQ(st->memory.limit, UINT64_MAX);
  EXPECT_EQ(st->memory.events.at("oom_kill"), 1u);
  EXPECT_EQ(st->cpu.usage_ns, 7000u);
  EXPECT_EQ(st->cpu.kernel_ns, 2000u);
  EXPECT_EQ(st->pids.limit, 100u);
  EXPECT_EQ(st->io.write_bytes, 20u);
  EXPECT_EQ(st->io.write_ops, 2u);

  CgroupPaths gone;
  gone.unified = t / "missing";
  EXPECT_EQ(ReadCgroupStats(gone).error().code(), Code::kNotFound);
}

// The v2 watcher is inotify on memory.events: a regular file in a temp dir behaves the same.
TEST(OciCgroupStats, V2OomWatcherOnFakeMemoryEvents) {
  TempDir t;
  CgroupPaths p;
  p.unified = t.path();
  Put(t / "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
  std::mutex mu;
  std::condition_variable cv;
  int ooms = 0;
  auto w = OomWatcher::Create(testing::Env()->loop(), p, [&] {
    std::lock_guard l(mu);
    ++ooms;
    cv.notify_all();
  });
  ASSERT_TRUE(w.has_value()) << w.error().ToString();
  auto wait_for = [&](int n) {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(5), [&] { return ooms >= n; });
  };
  Put(t / "memory.events", "low 0\nhigh 1\nmax 1\noom 0\noom_kill 0\n");  // not an OOM kill
  Put(t / "memory.events", "low 0\nhigh 1\nmax 2\noom 1\noom_kill 1\n");
  EXPECT_TRUE(wait_for(1));
  Put(t / "memory.events", "low 0\nhigh 1\nmax 3\noom 2\noom_kill 3\n");
  EXPECT_TRUE(wait_for(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    std::lock_guard l(mu);
    EXPECT_EQ(ooms, 2);  // one event per increase, as containerd's v2 watcher
  }
  w->reset();
  Put(t / "memory.events", "oom_kill 9\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::lock_guard l(mu);
  EXPECT_EQ(ooms, 2);  // nothing after the watcher is gone
}

TEST(OciCgroupStats, HostLayoutIsReadable) {
  const CgroupLayout& l = testing::Env()->cgroups();
  EXPECT_TRUE(!l.v1.empty() || !l.unified_mountpoint.empty());
  auto self = CgroupPathsForPid(::getpid(), l);
  ASSERT_TRUE(self.has_value()) << self.error().ToString();
  EXPECT_FALSE(self->DirFor("memory").empty());
  std::printf("host cgroup layout: %s, cgroup2 at '%s' with %zu controller(s)\n",
              std::string(CgroupModeName(l.mode)).c_str(), l.unified_mountpoint.c_str(),
              l.unified_controllers.size());
}

}  // namespace
}  // namespace berth::oci
