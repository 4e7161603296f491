// berthd as a process: claiming its socket, refusing what it must not touch, directory and
// socket modes, configuration errors, orderly and disorderly stops.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::trunc);
  f << data;
}

// lstat's mode, or 0 when the path does not exist.
mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Leaves a socket file at `path` that nobody listens on, as a crashed daemon would.
bool MakeStaleSocket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok =
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd, 1) == 0;
  ::close(fd);  // the file stays behind
  return ok;
}

class DaemonLifecycleTest : public DaemonTest {
 protected:
  // berthd with the harness's flags, some replaced by `overrides` (flag → value), run to
  // completion in the foreground. For starts that must fail; one that wrongly succeeds is
  // killed after 5 s (exit code -2).
  RunResult RunBerthd(const std::map<std::string, std::string>& overrides = {}) {
    std::map<std::string, std::string> flags = {{"--config", tmp_ + "/config.toml"},
                                                {"--root", root_},
                                                {"--state", state_},
                                                {"--address", socket_},
                                                {"--log-level", "debug"}};
    for (const auto& [k, v] : overrides) flags[k] = v;
    std::vector<std::string> argv = {BinaryPath("berthd")};
    for (const auto& [k, v] : flags) {
      argv.push_back(k);
      argv.push_back(v);
    }
    return berth::testing::Run(argv, "", 5);
  }

  bool Serving() {
    RunResult r = Ctr({"version"});
    return r.exit_code == 0 && r.out.find("UUID:") != std::string::npos;
  }

  bool DaemonAlive() {
    if (daemon_pid_ < 0) return false;
    int status;
    return ::waitpid(daemon_pid_, &status, WNOHANG) == 0;
  }
};

TEST_F(DaemonLifecycleTest, SecondDaemonOnSameSocketIsRefused) {
  // Same root, state and socket (berthd started twice with one config), and a different root
  // and state on the same socket: both must leave the first daemon alone.
  for (bool same_root : {true, false}) {
    std::map<std::string, std::string> overrides;
    if (!same_root) overrides = {{"--root", tmp_ + "/root2"}, {"--state", tmp_ + "/state2"}};
    RunResult r = RunBerthd(overrides);
    EXPECT_NE(r.exit_code, 0) << "same_root=" << same_root;
    EXPECT_NE(r.exit_code, -2) << "second berthd kept running";
    EXPECT_THAT(r.out + r.err, HasSubstr("another daemon is already serving on " + socket_));
    EXPECT_TRUE(DaemonAlive());
    EXPECT_TRUE(S_ISSOCK(ModeOf(socket_))) << "the first daemon's socket was removed";
    EXPECT_TRUE(Serving());
  }
}

TEST_F(DaemonLifecycleTest, StaleSocketIsReplaced) {
  ASSERT_EQ(Ctr({"ns", "create", "kept"}).exit_code, 0);
  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_FALSE(Exists(socket_));
  ASSERT_TRUE(MakeStaleSocket(socket_));
  ASSERT_TRUE(S_ISSOCK(ModeOf(socket_)));

  ASSERT_TRUE(StartDaemon());
  EXPECT_TRUE(Serving());
  EXPECT_THAT(Slurp(log_path_), HasSubstr("removing stale socket " + socket_));
  EXPECT_EQ(Ctr({"ns", "ls", "-q"}).out, "kept\n");
}

TEST_F(DaemonLifecycleTest, NonSocketAtAddressIsRefusedAndLeftIntact) {
  ASSERT_EQ(StopDaemon(), 0);
  WriteFile(socket_, "precious data\n");
  RunResult r = RunBerthd();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out + r.err, HasSubstr(socket_ + " exists and is not a socket"));
  EXPECT_TRUE(S_ISREG(ModeOf(socket_)));
  EXPECT_EQ(Slurp(socket_), "precious data\n");

  // A directory there is refused the same way, and kept.
  ASSERT_EQ(::unlink(socket_.c_str()), 0);
  ASSERT_EQ(::mkdir(socket_.c_str(), 0700), 0);
  r = RunBerthd();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out + r.err, HasSubstr("is not a socket"));
  EXPECT_TRUE(S_ISDIR(ModeOf(socket_)));
  ASSERT_EQ(::rmdir(socket_.c_str()), 0);
}

TEST_F(DaemonLifecycleTest, SigtermExitsZeroAndRemovesSocket) {
  ASSERT_TRUE(S_ISSOCK(ModeOf(socket_)));
  EXPECT_EQ(StopDaemon(), 0);  // fails if berthd is still running 15 s after SIGTERM
  EXPECT_FALSE(Exists(socket_)) << "socket left behind after SIGTERM";
  std::string log = Slurp(log_path_);
  EXPECT_THAT(log, HasSubstr("received SIGTERM"));
  EXPECT_THAT(log, HasSubstr("stopped"));
  // Clients now get "no such file" at once instead of a socket that never answers.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(errno, ENOENT);
  ::close(fd);
}

TEST_F(DaemonLifecycleTest, SigtermWithOpenEventStreamStopsPromptly) {
  // A subscriber must not hold the daemon's shutdown for the whole grace period.
  const std::string events_out = tmp_ + "/events.out";
  std::vector<std::string> argv = {"/usr/bin/ctr", "--address", socket_, "events"};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, events_out.c_str(), O_WRONLY | O_CREAT, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t events_pid = -1;
  ASSERT_EQ(posix_spawn(&events_pid, args[0], &fa, nullptr, args.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid <= 0) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper{events_pid};
  // Subscribed once an event shows up in its output.
  for (int i = 0; i < 40 && Slurp(events_out).empty(); ++i) {
    ASSERT_EQ(Ctr({"ns", "label", "poke", "i=" + std::to_string(i)}).exit_code, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_THAT(Slurp(events_out), HasSubstr("/namespaces/update"));

  // The failure this guards against is the stream holding shutdown for the whole grace period
  // (Daemon::Stop's 10 s); that, not how fast a loaded machine stops, is the deadline.
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(StopDaemon(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_FALSE(Exists(socket_));
  // The stream was ended by the server, so the client exits on its own.
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 60 && got == 0; ++i) {
    got = ::waitpid(events_pid, &status, WNOHANG);
    if (got == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(got, events_pid) << "ctr events still running after the daemon stopped";
  if (got == events_pid) reaper.pid = -1;
}

// The state dir is 0711 as containerd's: a user-namespaced container's remapped root must pass
// through it to its bundle (issue 12 item 10); what is inside stays private.
TEST_F(DaemonLifecycleTest, DirectoryAndSocketModes) {
  EXPECT_EQ(ModeOf(root_), S_IFDIR | 0700);
  EXPECT_EQ(ModeOf(state_), S_IFDIR | 0711);
  EXPECT_EQ(ModeOf(socket_), S_IFSOCK | 0660);

  // Existing directories that are too open are tightened at start.
  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(state_.c_str(), 0777), 0);
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(ModeOf(root_), S_IFDIR | 0700);
  EXPECT_EQ(ModeOf(state_), S_IFDIR | 0711);
  EXPECT_EQ(ModeOf(socket_), S_IFSOCK | 0660);
}

TEST_F(DaemonLifecycleTest, UnparseableConfigExitsOneNamingTheFile) {
  ASSERT_EQ(StopDaemon(), 0);
  const std::string config = tmp_ + "/config.toml";
  WriteFile(config, "version = 1\nroot = \"unterminated\n[grpc\n");
  RunResult r = RunBerthd();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(config));
  EXPECT_FALSE(Exists(socket_));

  // Valid TOML that berthd does not understand is an error too, not silently ignored.
  WriteFile(config, "version = 1\n[grpc]\nadress = \"/tmp/x.sock\"\n");
  r = RunBerthd();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(config));
  EXPECT_THAT(r.err, HasSubstr("grpc.adress"));
  EXPECT_FALSE(Exists(socket_));

  // A good file again: starts.
  WriteFile(config, "version = 1\n[debug]\nlevel = \"info\"\n");
  ASSERT_TRUE(StartDaemon());
  EXPECT_TRUE(Serving());
}

TEST_F(DaemonLifecycleTest, UnknownLogLevelExitsOne) {
  ASSERT_EQ(StopDaemon(), 0);
  RunResult r = RunBerthd({{"--log-level", "chatty"}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unknown log level chatty"));
  EXPECT_FALSE(Exists(socket_));
}

TEST_F(DaemonLifecycleTest, KillNineThenRestartKeepsData) {
  ASSERT_EQ(Ctr({"ns", "create", "n1", "a=b"}).exit_code, 0);
  ASSERT_EQ(Ctr({"ns", "label", "n1", "c=d"}).exit_code, 0);
  RunResult v = Ctr({"version"});
  auto uuid_at = v.out.find("UUID: ");
  ASSERT_NE(uuid_at, std::string::npos) << v.out;
  std::string uuid = v.out.substr(uuid_at + 6, 36);

  KillDaemon();
  // The crash leaves the socket file; the next start treats it as stale.
  EXPECT_TRUE(S_ISSOCK(ModeOf(socket_)));
  ASSERT_TRUE(StartDaemon());
  RunResult ls = Ctr({"ns", "ls"});
  EXPECT_EQ(ls.out, "NAME LABELS  \nn1   a=b,c=d \n");
  EXPECT_THAT(Ctr({"version"}).out, HasSubstr("UUID: " + uuid));
  // And the store still takes writes.
  EXPECT_EQ(Ctr({"ns", "create", "n2"}).exit_code, 0);
}

}  // namespace
}  // namespace berth::testing
