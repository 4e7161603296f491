// Docker on berth: Debian's dockerd 20.10 started with `--containerd=<berthd socket>` loads an
// image (`docker load` of a docker-save tar holding busybox-static) and runs containers on it:
// `docker run` output, exit codes and stdin, `run -d` + exec/top/pause/update/stop/rm, and a
// container that survives a berthd restart. Once with containerd's own runc shim and once with
// ours, each mapped to io.containerd.runc.v2 (the only runtime dockerd 20.10 asks for).
//
// Isolation. dockerd 20.10 hard-codes /run/docker/plugins, and the shims put their sockets under
// /run (containerd-shim-runc-v2: /run/containerd/s, ours: /run/berth/s). So berthd starts in a
// private mount namespace with a fresh tmpfs on /run (unshare), dockerd joins that namespace
// (nsenter), and the shims, runc and the containers inherit it: they all see each other's mounts,
// the host sees none of them, and they vanish with the namespace's last process. Everything else
// lives under the test's temp dir (data root, exec root incl. runc's state, pid file, socket,
// trust key via the config file's deprecated-key-path, the client's DOCKER_CONFIG); no bridge, no
// iptables, vfs storage (no mounts). Containers' cgroups live under a cgroup parent unique to the
// test, removed at the end, as is every process left in the namespace.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kDockerd[] = "/usr/sbin/dockerd";
constexpr char kDocker[] = "/usr/bin/docker";  // /usr/local/bin/docker may be a newer client
constexpr char kRuncShim[] = "/usr/bin/containerd-shim-runc-v2";

std::string ReadLink(const std::string& path) {
  std::error_code ec;
  auto target = fs::read_symlink(path, ec);
  return ec ? "" : target.string();
}

std::string Trimmed(std::string s) {
  while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// A docker-save archive (manifest.json + config + <diffid>/layer.tar) of one layer: busybox-static
// as /bin/busybox with a symlink per applet. `docker load` of Docker 20.10 takes it as is.
std::string BuildBusyboxArchive(const std::string& dir) {
  std::string rootfs = dir + "/rootfs", out = dir + "/archive";
  fs::create_directories(rootfs + "/bin");
  fs::create_directories(rootfs + "/tmp");
  fs::create_directories(rootfs + "/etc");
  fs::create_directories(out);
  fs::copy_file("/bin/busybox", rootfs + "/bin/busybox");
  ::chmod((rootfs + "/bin/busybox").c_str(), 0755);
  for (const auto& applet : Lines(Run({"/bin/busybox", "--list"}).out)) {
    if (applet.empty() || applet == "busybox") continue;
    std::error_code ec;
    fs::create_symlink("busybox", rootfs + "/bin/" + applet, ec);
  }
  RunResult tar = Run({"tar", "--numeric-owner", "--owner=0", "--group=0", "--mtime=@1700000000",
                       "-C", rootfs, "-cf", dir + "/layer.tar", "."});
  EXPECT_EQ(tar.exit_code, 0) << tar.err;
  std::string layer = ReadFileBytes(dir + "/layer.tar");
  std::string diff_id = Sha256Digest(layer);
  fs::create_directories(out + "/" + diff_id.substr(7));
  WriteFileBytes(out + "/" + diff_id.substr(7) + "/layer.tar", layer);
  nlohmann::json config = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"config", {{"Env", {"PATH=/bin"}}, {"Cmd", {"sh"}}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id}}}},
      {"history", {{{"created_by", "berth docker_on_berth_test"}}}}};
  std::string config_bytes = config.dump();
  std::string config_name = Sha256Digest(config_bytes).substr(7) + ".json";
  WriteFileBytes(out + "/" + config_name, config_bytes);
  nlohmann::json manifest = {{{"Config", config_name},
                              {"RepoTags", {"busybox:latest"}},
                              {"Layers", {diff_id.substr(7) + "/layer.tar"}}}};
  WriteFileBytes(out + "/manifest.json", manifest.dump());
  std::string archive = dir + "/busybox.tar";
  tar = Run({"tar", "-C", out, "-cf", archive, "."});
  EXPECT_EQ(tar.exit_code, 0) << tar.err;
  return archive;
}

struct ShimParam {
  const char* name;
  std::string binary;  // what io.containerd.runc.v2 maps to
};
void PrintTo(const ShimParam& p, std::ostream* os) { *os << p.name << " (" << p.binary << ")"; }

class DockerOnBerthTest : public DaemonTest, public ::testing::WithParamInterface<ShimParam> {
 protected:
  void SetUp() override {
    for (const char* bin : {kDockerd, kDocker}) {
      if (::access(bin, X_OK) != 0) GTEST_SKIP() << "needs " << bin << " (apt-get install docker.io)";
    }
    for (const std::string& bin : {std::string("/bin/busybox"), std::string("/usr/bin/runc"),
                                   std::string("/usr/bin/unshare"), std::string("/usr/bin/nsenter"),
                                   GetParam().binary}) {
      if (::access(bin.c_str(), X_OK) != 0) GTEST_SKIP() << "needs " << bin;
    }
    daemon_wrapper_ = {"/usr/bin/unshare", "--mount", "--propagation", "private", "--",
                       "/bin/sh", "-c",
                       "mount -t tmpfs -o mode=0755 berth-it-run /run && exec \"$@\"", "sh"};
    daemon_config_ = "version = 1\n[runtimes.\"io.containerd.runc.v2\"]\nbinary = \"" +
                     GetParam().binary + "\"\n";
    DaemonTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    mnt_ns_ = ReadLink("/proc/" + std::to_string(daemon_pid_) + "/ns/mnt");
    ASSERT_FALSE(mnt_ns_.empty());
    ASSERT_NE(mnt_ns_, ReadLink("/proc/self/ns/mnt")) << "berthd is not in its own mount namespace";
    cgroup_parent_ = "berth-it-docker-" + std::to_string(::getpid()) + "-" +
                     std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() %
                                    1000000);
    docker_sock_ = tmp_ + "/docker.sock";
    ASSERT_TRUE(StartDockerd());
  }

  void TearDown() override {
    if (tmp_.empty()) return DaemonTest::TearDown();
    if (dockerd_pid_ > 0) {
      for (const auto& id : Lines(Docker({"ps", "-aq"}).out)) Docker({"rm", "-f", id});
      StopDockerd();
    }
    if (HasFailure()) {
      std::cerr << "---- dockerd log (tail) ----\n" << Tail(tmp_ + "/dockerd.log", 60)
                << "----------------------------\n";
    }
    if (daemon_pid_ >= 0) {
      int code = StopDaemon();
      EXPECT_EQ(code, 0) << "berthd did not stop cleanly";
    }
    KillNamespace();
    RemoveCgroups();
    UnmountUnder(tmp_);
    DaemonTest::TearDown();
  }

  RunResult Docker(const std::vector<std::string>& args, const std::string& stdin_data = "",
                   int timeout_s = 120) {
    std::vector<std::string> argv = {kDocker, "-H", "unix://" + docker_sock_};
    argv.insert(argv.end(), args.begin(), args.end());
    return berth::testing::Run(argv, stdin_data, timeout_s,
                               {{"DOCKER_CONFIG", tmp_ + "/docker-cli"}, {"HOME", tmp_}});
  }

  bool StartDockerd() {
    WriteFileBytes(tmp_ + "/daemon.json",
                   nlohmann::json{{"deprecated-key-path", tmp_ + "/docker-key.json"}}.dump());
    std::vector<std::string> argv = {
        "/usr/bin/nsenter", "--mount=/proc/" + std::to_string(daemon_pid_) + "/ns/mnt", "--",
        kDockerd, "--containerd=" + socket_, "--config-file", tmp_ + "/daemon.json",
        "--data-root", tmp_ + "/docker-data", "--exec-root", tmp_ + "/docker-exec",
        "--pidfile", tmp_ + "/docker.pid", "-H", "unix://" + docker_sock_,
        "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
        "--bridge=none", "--userland-proxy=false", "--storage-driver=vfs",
        "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent=/" + cgroup_parent_,
        "--debug"};
    std::string log = tmp_ + "/dockerd.log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&dockerd_pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      dockerd_pid_ = -1;
      ADD_FAILURE() << "spawn dockerd: " << std::strerror(rc);
      return false;
    }
    for (int i = 0; i < 120; ++i) {
      if (::waitpid(dockerd_pid_, nullptr, WNOHANG) == dockerd_pid_) {
        dockerd_pid_ = -1;
        ADD_FAILURE() << "dockerd exited at start:\n" << Tail(log, 40);
        return false;
      }
      if (::access(docker_sock_.c_str(), F_OK) == 0 && Docker({"version"}, "", 10).exit_code == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ADD_FAILURE() << "dockerd did not answer in 60 s:\n" << Tail(log, 40);
    return false;
  }

  void StopDockerd() {
    if (dockerd_pid_ <= 0) return;
    ::kill(dockerd_pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(dockerd_pid_, nullptr, WNOHANG) == dockerd_pid_) {
        dockerd_pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "dockerd did not stop within 30 s of SIGTERM";
    ::kill(dockerd_pid_, SIGKILL);
    ::waitpid(dockerd_pid_, nullptr, 0);
    dockerd_pid_ = -1;
  }

  // SIGKILLs every process still in the test's mount namespace (shims, containers: a failed
  // test's leftovers) and waits until they are gone; the namespace and its mounts go with them.
  void KillNamespace() {
    if (mnt_ns_.empty()) return;
    for (int round = 0; round < 100; ++round) {
      int found = 0;
      std::error_code ec;
      for (const auto& p : fs::directory_iterator("/proc", ec)) {
        std::string name = p.path().filename();
        if (name.empty() || !isdigit(static_cast<unsigned char>(name[0]))) continue;
        if (ReadLink(p.path().string() + "/ns/mnt") != mnt_ns_) continue;
        ++found;
        ::kill(std::stoi(name), SIGKILL);
      }
      if (found == 0) return;
      if (round == 0) ADD_FAILURE() << found << " process(es) left in the test's mount namespace";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "processes in the test's mount namespace survive SIGKILL";
  }

  // rmdir (deepest first) the cgroup parent the containers used, in every hierarchy, after
  // SIGKILLing what still runs there (containers have their own mount namespaces, so a container
  // whose shim died is not found by KillNamespace).
  void RemoveCgroups() {
    if (cgroup_parent_.empty()) return;
    std::vector<fs::path> roots;
    std::error_code ec;
    for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      if (h.path().filename() == cgroup_parent_) roots.push_back(h.path());  // cgroup v2 root
      fs::path d = h.path() / cgroup_parent_;
      if (fs::is_directory(d, ec)) roots.push_back(d);
    }
    for (int round = 0; round < 50; ++round) {
      int found = 0;
      for (const auto& root : roots) {
        for (const auto& e : fs::recursive_directory_iterator(root, ec)) {
          if (e.path().filename() != "cgroup.procs") continue;
          for (const auto& pid : Lines(ReadFileBytes(e.path().string()))) {
            if (pid.empty()) continue;
            ++found;
            ::kill(std::stoi(pid), SIGKILL);
          }
        }
      }
      if (found == 0) break;
      if (round == 0) ADD_FAILURE() << found << " process(es) left in cgroup " << cgroup_parent_;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (const auto& root : roots) {
      std::vector<fs::path> dirs = {root};
      for (const auto& e : fs::recursive_directory_iterator(root, ec)) {
        if (e.is_directory(ec)) dirs.push_back(e.path());
      }
      std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
        return a.string().size() > b.string().size();
      });
      for (const auto& d : dirs) {
        if (::rmdir(d.c_str()) != 0 && errno != ENOENT) {
          ADD_FAILURE() << "rmdir " << d << ": " << std::strerror(errno);
        }
      }
    }
  }

  static std::string Tail(const std::string& path, size_t n) {
    auto lines = Lines(ReadFileBytes(path));
    std::string out;
    for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
      out += lines[i] + "\n";
    }
    return out;
  }

  void LoadBusybox() {
    std::string archive = BuildBusyboxArchive(tmp_ + "/image");
    RunResult r = Docker({"load", "-i", archive});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("Loaded image: busybox:latest"), std::string::npos) << r.out;
  }

  // No task or container of dockerd's namespace is left on berthd.
  void ExpectNothingOnBerthd() {
    RunResult tasks = Ctr({"tasks", "ls", "-q"}, "moby");
    EXPECT_EQ(tasks.exit_code, 0) << tasks.err;
    EXPECT_EQ(Trimmed(tasks.out), "");
    RunResult containers = Ctr({"containers", "ls", "-q"}, "moby");
    EXPECT_EQ(containers.exit_code, 0) << containers.err;
    EXPECT_EQ(Trimmed(containers.out), "");
  }

  std::string mnt_ns_;
  std::string cgroup_parent_;
  std::string docker_sock_;
  pid_t dockerd_pid_ = -1;
};

TEST_P(DockerOnBerthTest, RunPrintsOutputAndPropagatesExitCodes) {
  LoadBusybox();
  if (HasFatalFailure()) return;
  RunResult r = Docker({"run", "--rm", "busybox", "echo", "hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");

  r = Docker({"run", "--rm", "busybox", "sh", "-c", "exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;

  r = Docker({"run", "--rm", "-i", "busybox", "cat"}, "from stdin\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from stdin\n");

  // docker-init (tini) bind-mounted by dockerd as pid 1.
  r = Docker({"run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("docker-init"), std::string::npos) << r.out;

  // The container record dockerd created on berthd carries its bundle label and runc options.
  r = Docker({"create", "--name", "rec", "busybox", "true"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectNothingOnBerthd();  // `docker create` alone does not reach containerd
  ASSERT_EQ(Docker({"rm", "rec"}).exit_code, 0);
  ExpectNothingOnBerthd();
}

TEST_P(DockerOnBerthTest, DetachedContainerExecUpdateStopRm) {
  LoadBusybox();
  if (HasFatalFailure()) return;
  RunResult r = Docker({"run", "-d", "--name", "c1", "busybox", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = Trimmed(r.out);
  ASSERT_EQ(id.size(), 64u) << r.out;

  r = Docker({"ps", "--format", "{{.Names}} {{.Status}}"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("c1 Up")) << r.out;
  // berthd sees it in dockerd's namespace, with dockerd's runtime and bundle label.
  r = Ctr({"containers", "info", id}, "moby");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(info.is_discarded()) << r.out;
  EXPECT_EQ(info["Runtime"]["Name"], "io.containerd.runc.v2");
  EXPECT_TRUE(info["Labels"].contains("com.docker/engine.bundle.path")) << r.out;
  r = Ctr({"tasks", "ls"}, "moby");
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RUNNING"), std::string::npos) << r.out;

  r = Docker({"exec", "c1", "echo", "from exec"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "from exec\n");
  r = Docker({"exec", "c1", "sh", "-c", "exit 5"});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  r = Docker({"exec", "-i", "c1", "cat"}, "exec stdin\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "exec stdin\n");

  r = Docker({"top", "c1"});  // Tasks.ListPids
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sleep 1000"), std::string::npos) << r.out;

  ASSERT_EQ(Docker({"pause", "c1"}).exit_code, 0);
  EXPECT_EQ(Trimmed(Docker({"inspect", "-f", "{{.State.Status}}", "c1"}).out), "paused");
  r = Ctr({"tasks", "ls"}, "moby");
  EXPECT_NE(r.out.find("PAUSED"), std::string::npos) << r.out;
  ASSERT_EQ(Docker({"unpause", "c1"}).exit_code, 0);
  EXPECT_EQ(Trimmed(Docker({"inspect", "-f", "{{.State.Status}}", "c1"}).out), "running");

  // Tasks.Update with linux resources: the limit reaches the container's memory cgroup.
  r = Docker({"update", "--memory", "64m", "--memory-swap", "128m", "c1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string limit;
  for (const char* f : {"/sys/fs/cgroup/memory/" , "/sys/fs/cgroup/"}) {
    std::string dir = std::string(f) + cgroup_parent_ + "/" + id;
    for (const char* file : {"/memory.limit_in_bytes", "/memory.max"}) {
      if (limit.empty() && ::access((dir + file).c_str(), R_OK) == 0) {
        limit = Trimmed(ReadFileBytes(dir + file));
      }
    }
  }
  EXPECT_EQ(limit, std::to_string(64 << 20));

  r = Docker({"stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "c1"});  // Metrics
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Trimmed(r.out), "c1 1");

  // sleep as pid 1 ignores SIGTERM: stop kills it after the grace period.
  r = Docker({"stop", "-t", "1", "c1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Trimmed(Docker({"inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "c1"}).out),
            "exited 137");
  ExpectNothingOnBerthd();

  // Restart it, then signal it: a trap turns SIGTERM into exit 7.
  r = Docker({"run", "-d", "--name", "c2", "busybox", "sh", "-c",
              "trap 'exit 7' TERM; while true; do sleep 0.1; done"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Docker({"stop", "-t", "30", "c2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Trimmed(Docker({"inspect", "-f", "{{.State.ExitCode}}", "c2"}).out), "7");

  EXPECT_EQ(Docker({"rm", "c1", "c2"}).exit_code, 0);
  EXPECT_EQ(Trimmed(Docker({"ps", "-aq"}).out), "");
  ExpectNothingOnBerthd();
}

TEST_P(DockerOnBerthTest, ContainerSurvivesBerthdRestart) {
  LoadBusybox();
  if (HasFatalFailure()) return;
  RunResult r = Docker({"run", "-d", "--name", "c1", "busybox", "sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(StopDaemon(), 0);
  // The new berthd joins the namespace dockerd and the shim still hold (their /run).
  daemon_wrapper_ = {"/usr/bin/nsenter", "--mount=/proc/" + std::to_string(dockerd_pid_) + "/ns/mnt",
                     "--"};
  ASSERT_TRUE(StartDaemon());
  ASSERT_EQ(ReadLink("/proc/" + std::to_string(daemon_pid_) + "/ns/mnt"), mnt_ns_);
  // dockerd redials on its own; the first calls may still see the old connection fail. An
  // exec that hangs (dockerd lost its event stream and never sees the exit) fails the test
  // within a minute instead of holding it for ctest's timeout.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  do {
    r = Docker({"exec", "c1", "echo", "after restart"}, "", 20);
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  } while (std::chrono::steady_clock::now() < give_up);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "after restart\n");
  r = Docker({"rm", "-f", "c1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNothingOnBerthd();
}

INSTANTIATE_TEST_SUITE_P(Shims, DockerOnBerthTest,
                         ::testing::Values(ShimParam{"RuncShim", kRuncShim},
                                           ShimParam{"BerthShim", BERTH_SHIM_PATH}),
                         [](const ::testing::TestParamInfo<ShimParam>& p) {
                           return std::string(p.param.name);
                         });

}  // namespace
}  // namespace berth::testing
