#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

extern char** environ;

namespace berth::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool SocketAnswers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

RunResult Run(const std::vector<std::string>& argv, const std::string& stdin_data,
              int timeout_s, const std::map<std::string, std::string>& extra_env) {
  RunResult r;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) {
    r.err = "pipe failed";
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && extra_env.contains(kv.substr(0, eq))) continue;
    env_store.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    r.err = std::string("spawn ") + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  // Feed stdin in full first (small inputs only), then drain both outputs with poll.
  size_t off = 0;
  while (off < stdin_data.size()) {
    ssize_t n = ::write(in[1], stdin_data.data() + off, stdin_data.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(in[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left)) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = timed_out ? -2 : DecodeWait(status);
  return r;
}

namespace {

std::string Sha256HexOf(const std::string& path) {
  RunResult r = Run({"sha256sum", "--", path}, "", 60);
  return r.out.size() >= 64 ? r.out.substr(0, 64) : "";
}

// Stores `data` as a blob of the OCI layout at `dir`; returns its descriptor.
nlohmann::json AddOciBlob(const std::string& dir, const std::string& media_type,
                          const std::string& data) {
  std::string tmp = dir + "/blob.tmp";
  std::ofstream(tmp, std::ios::binary | std::ios::trunc) << data;
  std::string hex = Sha256HexOf(tmp);
  std::filesystem::rename(tmp, dir + "/blobs/sha256/" + hex);
  return {{"mediaType", media_type},
          {"digest", "sha256:" + hex},
          {"size", static_cast<int64_t>(data.size())}};
}

}  // namespace

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> out;
  std::istringstream in(row);
  for (std::string cell; in >> cell;) out.push_back(cell);
  return out;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::string out(n, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

OciImage BuildOciImage(const std::string& workdir, const std::string& name,
                       const std::map<std::string, std::string>& files) {
  const std::string kManifest = "application/vnd.oci.image.manifest.v1+json";
  std::string dir = workdir + "/oci", layer_dir = workdir + "/layer";
  std::filesystem::create_directories(dir + "/blobs/sha256");
  std::filesystem::create_directories(layer_dir);
  std::vector<std::string> tar_layer = {"tar", "-C", layer_dir, "-cf", workdir + "/layer.tar"};
  for (const auto& [path, content] : files) {
    std::filesystem::create_directories(
        std::filesystem::path(layer_dir + "/" + path).parent_path());
    std::ofstream(layer_dir + "/" + path, std::ios::binary) << content;
    tar_layer.push_back(path);
  }
  EXPECT_EQ(Run(tar_layer, "", 30).exit_code, 0);
  auto layer = AddOciBlob(dir, "application/vnd.oci.image.layer.v1.tar", Slurp(workdir + "/layer.tar"));
  nlohmann::json config = {{"architecture", "amd64"},
                           {"os", "linux"},
                           {"config", nlohmann::json::object()},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", {layer["digest"]}}}}};
  auto cfg = AddOciBlob(dir, "application/vnd.oci.image.config.v1+json", config.dump());
  nlohmann::json manifest = {
      {"schemaVersion", 2}, {"mediaType", kManifest}, {"config", cfg}, {"layers", {layer}}};
  OciImage img;
  img.manifest_bytes = manifest.dump();
  nlohmann::json desc = AddOciBlob(dir, kManifest, img.manifest_bytes);
  img.manifest_digest = desc["digest"];
  img.config_digest = cfg["digest"];
  img.layer_digest = layer["digest"];
  desc["annotations"] = {{"io.containerd.image.name", name},
                         {"org.opencontainers.image.ref.name", "latest"}};
  nlohmann::json index = {{"schemaVersion", 2}, {"manifests", {desc}}};
  std::ofstream(dir + "/index.json") << index.dump();
  std::ofstream(dir + "/oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
  img.tar = workdir + "/image.tar";
  EXPECT_EQ(Run({"tar", "-C", dir, "-cf", img.tar, "oci-layout", "index.json", "blobs"}, "", 30)
                .exit_code,
            0);
  return img;
}

std::string BinaryPath(const std::string& name) {
  if (name == "berthd") return BERTHD_PATH;
  if (name == "berth") return BERTH_CLI_PATH;
  return name;
}

void DaemonTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
  if (::access("/usr/bin/ctr", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/ctr (apt-get install containerd)";
  char tmpl[] = "/tmp/berth-it-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  tmp_ = tmpl;
  root_ = tmp_ + "/root";
  state_ = tmp_ + "/state";
  socket_ = state_ + "/berthd.sock";
  log_path_ = tmp_ + "/berthd.log";
  ASSERT_TRUE(StartDaemon());
}

bool DaemonTest::StartDaemon(const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv = {BinaryPath("berthd"), "--config", tmp_ + "/config.toml",
                                   "--root",  root_,    "--state",  state_,
                                   "--address", socket_, "--log-level", "debug"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int rc = posix_spawn(&daemon_pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ADD_FAILURE() << "spawn berthd: " << std::strerror(rc);
    daemon_pid_ = -1;
    return false;
  }
  for (int i = 0; i < 200; ++i) {
    if (SocketAnswers(socket_)) return true;
    int status;
    if (::waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
      daemon_pid_ = -1;
      ADD_FAILURE() << "berthd exited at start:\n" << Slurp(log_path_);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "berthd did not answer on " << socket_ << " in 10 s:\n" << Slurp(log_path_);
  KillDaemon();
  return false;
}

int DaemonTest::StopDaemon() {
  if (daemon_pid_ < 0) return -1;
  ::kill(daemon_pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (::waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
      daemon_pid_ = -1;
      return DecodeWait(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "berthd did not stop within 15 s of SIGTERM";
  KillDaemon();
  return -1;
}

void DaemonTest::KillDaemon() {
  if (daemon_pid_ < 0) return;
  ::kill(daemon_pid_, SIGKILL);
  ::waitpid(daemon_pid_, nullptr, 0);
  daemon_pid_ = -1;
}

void DaemonTest::TearDown() {
  if (daemon_pid_ >= 0) {
    int code = StopDaemon();
    EXPECT_EQ(code, 0) << "berthd log:\n" << Slurp(log_path_);
  }
  if (HasFailure() && !log_path_.empty()) {
    std::cerr << "---- berthd log ----\n" << Slurp(log_path_) << "--------------------\n";
  }
  if (!tmp_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmp_, ec);
  }
}

RunResult DaemonTest::Ctr(const std::vector<std::string>& args, const std::string& ns) {
  std::vector<std::string> argv = {"/usr/bin/ctr", "--address", socket_, "--namespace", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  return berth::testing::Run(argv);
}

RunResult DaemonTest::Berth(const std::vector<std::string>& args, const std::string& ns) {
  std::vector<std::string> argv = {BinaryPath("berth"), "--address", socket_, "--namespace", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  return berth::testing::Run(argv);
}

bool LocalRegistry::Start(const std::string& dir) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(s);
    return false;
  }
  ::close(s);
  dir_ = dir;
  addr_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  std::filesystem::create_directories(dir + "/data");
  std::ofstream(dir + "/config.yml") << "version: 0.1\n"
                                        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                                        "storage:\n  filesystem:\n    rootdirectory: "
                                     << dir << "/data\nhttp:\n  addr: " << addr_ << "\n";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::string log = dir + "/registry.log";
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> argv = {"docker-registry", "serve", dir + "/config.yml"};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int rc = posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    pid_ = -1;
    return false;
  }
  for (int i = 0; i < 100; ++i) {
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool up = ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(c);
    if (up) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "registry did not come up:\n" << Slurp(log);
  return false;
}

void LocalRegistry::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string LocalRegistry::BlobPath(const std::string& digest) const {
  std::string hex = digest.substr(7);
  return dir_ + "/data/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
}

}  // namespace berth::testing
