// The shim binary's command line, run as containerd runs it: `start`, `delete`, `-v`, and the
// BERTH_SHIM_RUN_DIR contract (sockets and runtime state under it, never /run/berth).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "ttrpc/client.h"
#include "../common/wait.h"

extern char** environ;

namespace berth::shim {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Ran {
  int code = -1;
  std::string out, err;
};

// Runs the shim with `args` in `cwd`, our environment plus `env` ("" values unset the name).
Ran RunShim(const std::vector<std::string>& args, const std::string& cwd,
            const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> e;
  for (char** p = environ; *p; ++p) {
    std::string kv = *p;
    auto eq = kv.find('=');
    if (eq != std::string::npos) e[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) {
    if (v.empty()) {
      e.erase(k);
    } else {
      e[k] = v;
    }
  }
  std::vector<std::string> envs;
  for (const auto& [k, v] : e) envs.push_back(k + "=" + v);
  std::vector<char*> cenv;
  for (auto& s : envs) cenv.push_back(s.data());
  cenv.push_back(nullptr);
  std::vector<std::string> argv = {BERTH_SHIM_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& s : argv) cargv.push_back(s.data());
  cargv.push_back(nullptr);

  std::string out_path = cwd + "/.out", err_path = cwd + "/.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = -1;
  Ran r;
  if (posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, cargv.data(), cenv.data()) != 0) return r;
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& p) {
    std::string s;
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
      std::fclose(f);
    }
    return s;
  };
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  ::unlink(out_path.c_str());
  ::unlink(err_path.c_str());
  return r;
}

class ShimMainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-shim-main-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bundle_ = dir_ + "/bundle";
    run_dir_ = dir_ + "/run";
    fs::create_directories(bundle_);
    run_berth_existed_ = fs::exists("/run/berth");
  }
  void TearDown() override {
    if (!run_berth_existed_) {
      EXPECT_FALSE(fs::exists("/run/berth")) << "the shim used /run/berth";
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_, bundle_, run_dir_;
  bool run_berth_existed_ = false;
};

TEST_F(ShimMainTest, Version) {
  auto r = RunShim({"-v"}, bundle_, {});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("containerd-shim-berth-v2"), std::string::npos) << r.out;
}

TEST_F(ShimMainTest, RunDirMustBeAbsolute) {
  std::vector<std::string> start = {"-namespace", "n", "-id", "c1", "-address", "/x.sock", "start"};
  auto r = RunShim(start, bundle_, {{"BERTH_SHIM_RUN_DIR", "relative/dir"}});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("BERTH_SHIM_RUN_DIR must be absolute"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

// issue 12 #9: a run dir (berthd's state dir) of any length works; <dir>/s/<64 hex> far past
// sun_path's 107 bytes is bound and dialled through /proc/self/fd/<dir fd>/<name>.
TEST_F(ShimMainTest, Issue12LongRunDirServes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (subreaper, runtime state)";
  std::string long_dir = dir_ + "/" + std::string(100, 'd') + "/" + std::string(100, 'e');
  std::map<std::string, std::string> env = {{"BERTH_SHIM_RUN_DIR", long_dir},
                                            {"TTRPC_ADDRESS", ""}};
  std::vector<std::string> start = {"-namespace", "n", "-id", "c1", "-address",
                                    dir_ + "/containerd.sock", "start"};
  auto r = RunShim(start, bundle_, env);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.out.rfind("unix://" + long_dir + "/s/", 0), 0u) << r.out;
  std::string sock = r.out.substr(7);
  ASSERT_GT(sock.size(), 200u);
  struct stat st;
  ASSERT_EQ(::lstat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Reused by a second start for the same group.
  auto again = RunShim(start, bundle_, env);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, r.out);

  auto c = ttrpc::Client::Connect(r.out);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  containerd::task::v2::ConnectRequest creq;
  creq.set_id("c1");
  containerd::task::v2::ConnectResponse cresp;
  Status cs = (*c)->Call("containerd.task.v2.Task", "Connect", creq, &cresp);
  ASSERT_TRUE(cs.ok()) << cs.ToString();
  pid_t shim_pid = static_cast<pid_t>(cresp.shim_pid());
  containerd::task::v2::ShutdownRequest sreq;
  sreq.set_id("c1");
  google::protobuf::Empty empty;
  (void)(*c)->Call("containerd.task.v2.Task", "Shutdown", sreq, &empty);
  c->reset();
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(shim_pid, 0) != 0 && !fs::exists(sock);
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(gone) << "shim " << shim_pid << " still running or socket left";
}

TEST_F(ShimMainTest, StartServesUnderRunDirReusesAndShutsDown) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (subreaper, runtime state)";
  std::map<std::string, std::string> env = {{"BERTH_SHIM_RUN_DIR", run_dir_},
                                            {"TTRPC_ADDRESS", ""}};
  std::vector<std::string> start = {"-namespace", "n", "-id", "c1", "-address",
                                    dir_ + "/containerd.sock", "start"};
  auto r = RunShim(start, bundle_, env);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.out.rfind("unix://" + run_dir_ + "/s/", 0), 0u) << r.out;
  std::string sock = r.out.substr(7);
  EXPECT_EQ(sock.size(), run_dir_.size() + 3 + 64);
  struct stat st;
  ASSERT_EQ(::lstat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((run_dir_ + "/s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string address_file;
  {
    FILE* f = std::fopen((bundle_ + "/address").c_str(), "r");
    ASSERT_NE(f, nullptr);
    char buf[256] = {};
    address_file.assign(buf, std::fread(buf, 1, sizeof(buf) - 1, f));
    std::fclose(f);
  }
  EXPECT_EQ(address_file, r.out);

  // A second start for the same group finds the live server and prints the same address.
  auto again = RunShim(start, bundle_, env);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, r.out);

  // The server answers Connect, then Shutdown (no containers) makes it exit and remove its socket.
  auto c = ttrpc::Client::Connect(r.out);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  containerd::task::v2::ConnectRequest creq;
  creq.set_id("c1");
  containerd::task::v2::ConnectResponse cresp;
  Status cs = (*c)->Call("containerd.task.v2.Task", "Connect", creq, &cresp);
  ASSERT_TRUE(cs.ok()) << cs.ToString();
  EXPECT_GT(cresp.shim_pid(), 0u);
  EXPECT_EQ(cresp.task_pid(), 0u);
  pid_t shim_pid = static_cast<pid_t>(cresp.shim_pid());
  // The shim runs one above the daemon's OOM score (here: ours), as the runc shim does.
  auto score = [](pid_t pid) {
    FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/oom_score_adj").c_str(), "r");
    int v = -9999;
    if (f) {
      if (std::fscanf(f, "%d", &v) != 1) v = -9999;
      std::fclose(f);
    }
    return v;
  };
  int mine = score(::getpid());
  EXPECT_EQ(score(shim_pid), std::min(mine + 1, 1000));

  containerd::task::v2::ShutdownRequest sreq;
  sreq.set_id("c1");
  google::protobuf::Empty empty;
  Status ss = (*c)->Call("containerd.task.v2.Task", "Shutdown", sreq, &empty);
  EXPECT_TRUE(ss.ok()) << ss.ToString();
  c->reset();
  bool gone = berth::testing::WaitFor(
      [&] { return ::kill(shim_pid, 0) != 0 && !fs::exists(sock); });
  EXPECT_TRUE(gone) << "shim " << shim_pid << " still running or socket left";
}

TEST_F(ShimMainTest, DeletePrintsDeleteResponse) {
  if (::geteuid() != 0 || ::access("/usr/bin/runc", X_OK) != 0) GTEST_SKIP() << "needs root, runc";
  auto r = RunShim({"-namespace", "n", "-id", "gone", "-bundle", bundle_, "delete"}, bundle_,
                   {{"BERTH_SHIM_RUN_DIR", run_dir_}});
  ASSERT_EQ(r.code, 0) << r.err;
  containerd::task::v2::DeleteResponse resp;
  ASSERT_TRUE(resp.ParseFromString(r.out));
  EXPECT_EQ(resp.exit_status(), 137u);
  EXPECT_GT(resp.exited_at().seconds(), 0);
}

}  // namespace
}  // namespace berth::shim
