#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <iomanip>
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
  // Feed stdin and drain both outputs together (poll), so neither side can block the other.
  // A child that exits without reading its stdin gives EPIPE, not a SIGPIPE that would kill
  // the test process and orphan the daemons it started.
  static const bool sigpipe_ignored = [] { return ::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  size_t off = 0;
  if (stdin_data.empty()) {
    ::close(in[1]);
    in[1] = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
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
    if (::poll(fds, 3, static_cast<int>(left)) < 0 && errno != EINTR) break;
    if (fds[2].fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(fds[2].fd, stdin_data.data() + off, stdin_data.size() - off);
      if (n > 0) off += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN) || off == stdin_data.size()) {
        ::close(fds[2].fd);
        fds[2].fd = -1;
      }
    }
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
  argv.insert(argv.begin(), daemon_wrapper_.begin(), daemon_wrapper_.end());
  if (!daemon_config_.empty()) WriteFileBytes(tmp_ + "/config.toml", daemon_config_);
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

// ---------------------------------------------------------------------------------------------
// Bytes, digests, mounts

namespace berth::testing {

std::string Sha256Digest(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string Gzip(std::string_view data, int level) {
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper with no name and mtime 0.
  if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return "";
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : "";
}

std::string ReadFileBytes(const std::string& path) { return Slurp(path); }

bool WriteFileBytes(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(f);
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \\ooo.
std::string UnescapeMountPath(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
      continue;
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::vector<std::string> MountsUnder(const std::string& prefix) {
  std::vector<std::string> out;
  std::string p = prefix;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  for (const auto& line : Lines(Slurp("/proc/self/mountinfo"))) {
    auto cells = Cells(line);
    if (cells.size() < 5) continue;
    std::string mp = UnescapeMountPath(cells[4]);
    if (mp == p || mp.starts_with(p + "/")) out.push_back(mp);
  }
  return out;
}

void UnmountUnder(const std::string& prefix) {
  for (int round = 0; round < 8; ++round) {
    auto mounts = MountsUnder(prefix);
    if (mounts.empty()) return;
    std::sort(mounts.begin(), mounts.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& m : mounts) ::umount2(m.c_str(), MNT_DETACH);
  }
}

// ---------------------------------------------------------------------------------------------
// OCI layouts

namespace {

nlohmann::json DescJson(const Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
}

}  // namespace

OciLayoutBuilder::OciLayoutBuilder(std::string dir) : dir_(std::move(dir)) {
  std::filesystem::create_directories(dir_ + "/blobs/sha256");
  WriteFileBytes(dir_ + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  WriteFileBytes(dir_ + "/index.json", R"({"schemaVersion":2,"manifests":[]})");
}

Descriptor OciLayoutBuilder::AddBlob(const std::string& media_type, std::string_view data) {
  Descriptor d{media_type, Sha256Digest(data), static_cast<int64_t>(data.size())};
  WriteFileBytes(dir_ + "/blobs/sha256/" + d.digest.substr(7), data);
  return d;
}

ManifestInfo OciLayoutBuilder::AddImage(const std::vector<LayerSpec>& layers,
                                        const std::string& arch, const std::string& variant) {
  ManifestInfo m;
  m.arch = arch;
  m.variant = variant;
  nlohmann::json layer_descs = nlohmann::json::array();
  for (const auto& l : layers) {
    m.diff_ids.push_back(Sha256Digest(l.tar));
    Descriptor d = l.gzip
                       ? AddBlob("application/vnd.oci.image.layer.v1.tar+gzip", Gzip(l.tar, l.level))
                       : AddBlob("application/vnd.oci.image.layer.v1.tar", l.tar);
    m.layers.push_back(d);
    layer_descs.push_back(DescJson(d));
  }
  nlohmann::json config = {{"architecture", arch},
                           {"os", m.os},
                           {"config", {{"Cmd", {"/bin/sh"}}}},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", m.diff_ids}}}};
  if (!variant.empty()) config["variant"] = variant;
  m.config = AddBlob("application/vnd.oci.image.config.v1+json", config.dump());
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                             {"config", DescJson(m.config)},
                             {"layers", layer_descs}};
  m.desc = AddBlob("application/vnd.oci.image.manifest.v1+json", manifest.dump());
  return m;
}

Descriptor OciLayoutBuilder::AddIndex(const std::vector<ManifestInfo>& manifests) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : manifests) {
    nlohmann::json d = DescJson(m.desc);
    d["platform"] = {{"architecture", m.arch}, {"os", m.os}};
    if (!m.variant.empty()) d["platform"]["variant"] = m.variant;
    list.push_back(d);
  }
  nlohmann::json index = {{"schemaVersion", 2},
                          {"mediaType", "application/vnd.oci.image.index.v1+json"},
                          {"manifests", list}};
  return AddBlob("application/vnd.oci.image.index.v1+json", index.dump());
}

void OciLayoutBuilder::Tag(const std::string& tag, const Descriptor& desc) {
  tags_.emplace_back(tag, desc);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [t, d] : tags_) {
    nlohmann::json j = DescJson(d);
    j["annotations"] = {{"org.opencontainers.image.ref.name", t}};
    list.push_back(j);
  }
  nlohmann::json index = {{"schemaVersion", 2}, {"manifests", list}};
  WriteFileBytes(dir_ + "/index.json", index.dump());
}

std::string TarFiles(const std::string& workdir, const std::map<std::string, std::string>& files) {
  static int counter = 0;
  std::string base = workdir + "/tar-" + std::to_string(++counter);
  std::string src = base + "-src";
  std::filesystem::create_directories(src);
  std::vector<std::string> argv = {"tar", "--numeric-owner", "--owner=0", "--group=0",
                                   "--mtime=@1700000000", "-C", src, "-cf", base + ".tar"};
  for (const auto& [path, content] : files) {
    std::filesystem::create_directories(std::filesystem::path(src + "/" + path).parent_path());
    WriteFileBytes(src + "/" + path, content);
    argv.push_back(path);
  }
  RunResult r = Run(argv, "", 120);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return ReadFileBytes(base + ".tar");
}

std::string PushOciLayout(const std::string& layout, const std::string& tag,
                          const std::string& ref, bool all) {
  std::vector<std::string> argv = {"skopeo", "--insecure-policy", "copy", "--quiet",
                                   "--dest-tls-verify=false"};
  if (all) argv.push_back("--all");
  argv.push_back("oci:" + layout + ":" + tag);
  argv.push_back("docker://" + ref);
  RunResult r = Run(argv, "", 180);
  return r.exit_code == 0 ? "" : "skopeo copy: " + r.err + r.out;
}

// ---------------------------------------------------------------------------------------------
// containerd

RunResult CtrAt(const std::string& socket, const std::vector<std::string>& args,
                const std::string& ns, int timeout_s, const std::string& stdin_data) {
  std::vector<std::string> argv = {"/usr/bin/ctr", "--address", socket, "--namespace", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, stdin_data, timeout_s);
}

bool ContainerdDaemon::Start(const std::string& dir, const Options& opts) {
  if (pid_ > 0) return true;
  dir_ = dir;
  root_ = dir + "/root";
  state_ = dir + "/state";
  socket_ = state_ + "/containerd.sock";
  config_ = dir + "/config.toml";
  log_ = dir + "/containerd.log";
  std::filesystem::create_directories(root_);
  std::filesystem::create_directories(state_);
  std::ostringstream cfg;
  cfg << "version = 2\n"
      << "root = \"" << root_ << "\"\n"
      << "state = \"" << state_ << "\"\n"
      << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n"
      << "[grpc]\n  address = \"" << socket_ << "\"\n  tcp_address = \"\"\n\n"
      << "[ttrpc]\n  address = \"" << socket_ << ".ttrpc\"\n\n"
      << "[debug]\n  address = \"\"\n  level = \"" << opts.log_level << "\"\n\n"
      << "[metrics]\n  address = \"\"\n\n"
      << "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" << root_ << "/opt\"\n\n"
      << opts.extra_config << "\n";
  WriteFileBytes(config_, cfg.str());

  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && opts.env.contains(kv.substr(0, eq))) continue;
    env_store.push_back(kv);
  }
  for (const auto& [k, v] : opts.env) env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv = {opts.binary, "--config", config_};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Its own process group, so a terminal's signals aimed at the test do not reach it first.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  int rc = posix_spawn(&pid_, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    pid_ = -1;
    ADD_FAILURE() << "spawn " << opts.binary << ": " << std::strerror(rc);
    return false;
  }
  for (int i = 0; i < 150; ++i) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "containerd exited at start:\n" << Slurp(log_);
      return false;
    }
    if (SocketAnswers(socket_) && CtrAt(socket_, {"version"}, "default", 10).exit_code == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "containerd did not answer on " << socket_ << " in 15 s:\n" << Slurp(log_);
  Kill();
  return false;
}

void ContainerdDaemon::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void ContainerdDaemon::Stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = ::waitpid(pid_, nullptr, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (gone) {
      pid_ = -1;
    } else {
      Kill();
    }
  }
  if (dir_.empty()) return;
  UnmountUnder(root_);
  UnmountUnder(state_);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  dir_.clear();
}

std::string ContainerdDaemon::Log() const { return Slurp(log_); }

// ---------------------------------------------------------------------------------------------
// Tree scans

namespace {

std::string Hex(std::string_view v) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : v) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string FileSha256(int dirfd, const std::string& rel) {
  int fd = ::openat(dirfd, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0) fd = ::openat(dirfd, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::string("open error: ") + std::strerror(errno);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return Hex(std::string_view(reinterpret_cast<char*>(md), len));
}

std::map<std::string, std::string> Xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  std::string names(65536, '\0');
  ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return out;
  names.resize(static_cast<size_t>(n));
  for (size_t i = 0; i < names.size();) {
    std::string name(names.c_str() + i);
    i += name.size() + 1;
    if (name.empty()) continue;
    std::string value(65536, '\0');
    ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    out[name] = v < 0 ? std::string("error: ") + std::strerror(errno)
                      : Hex(std::string_view(value.data(), static_cast<size_t>(v)));
  }
  return out;
}

}  // namespace

std::string TreeEntry::Describe(bool with_times, bool dir_mtime) const {
  std::ostringstream o;
  o << type << " mode=" << std::oct << mode << std::dec << " uid=" << uid << " gid=" << gid;
  if (type == 'f') o << " size=" << size << " sha256=" << sha256.substr(0, 16);
  if (type == 'l') o << " -> " << link;
  if (type == 'c' || type == 'b') o << " dev=" << rdev_major << ":" << rdev_minor;
  if (type != 'd') o << " nlink=" << nlink;
  if (!hardlinks.empty()) o << " links=[" << hardlinks << "]";
  for (const auto& [k, v] : xattrs) o << " " << k << "=" << v;
  if (with_times && (type != 'd' || dir_mtime)) {
    o << " mtime=" << mtime_s << "." << std::setw(9) << std::setfill('0') << mtime_ns;
  }
  if (with_times && type != 'd') {
    o << " atime=" << atime_s << "." << std::setw(9) << std::setfill('0') << atime_ns;
  }
  return o.str();
}

std::map<std::string, TreeEntry> ScanTree(const std::string& root) {
  std::map<std::string, TreeEntry> out;
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> inodes;
  std::vector<std::string> todo = {"."};
  std::vector<std::string> files;
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    std::string path = rel == "." ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    TreeEntry e;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_s = st.st_mtim.tv_sec;
    e.mtime_ns = st.st_mtim.tv_nsec;
    e.atime_s = st.st_atim.tv_sec;
    e.atime_ns = st.st_atim.tv_nsec;
    e.xattrs = Xattrs(path);
    switch (st.st_mode & S_IFMT) {
      case S_IFDIR: {
        e.type = 'd';
        std::vector<std::string> children;
        for (const auto& c : std::filesystem::directory_iterator(path)) {
          children.push_back(c.path().filename().string());
        }
        for (const auto& c : children) todo.push_back(rel == "." ? c : rel + "/" + c);
        break;
      }
      case S_IFREG:
        e.type = 'f';
        e.size = st.st_size;
        files.push_back(rel);
        break;
      case S_IFLNK: {
        e.type = 'l';
        std::string t(PATH_MAX, '\0');
        ssize_t n = ::readlink(path.c_str(), t.data(), t.size());
        t.resize(n < 0 ? 0 : static_cast<size_t>(n));
        e.link = t;
        break;
      }
      case S_IFIFO: e.type = 'p'; break;
      case S_IFSOCK: e.type = 's'; break;
      case S_IFCHR:
      case S_IFBLK:
        e.type = S_ISCHR(st.st_mode) ? 'c' : 'b';
        e.rdev_major = major(st.st_rdev);
        e.rdev_minor = minor(st.st_rdev);
        break;
      default: break;
    }
    if (e.type != 'd') {
      e.nlink = static_cast<unsigned>(st.st_nlink);
      inodes[{st.st_dev, st.st_ino}].push_back(rel);
    }
    out[rel] = std::move(e);
  }
  for (auto& [key, paths] : inodes) {
    if (paths.size() < 2) continue;
    std::sort(paths.begin(), paths.end());
    std::string joined;
    for (const auto& p : paths) joined += (joined.empty() ? "" : ",") + p;
    for (const auto& p : paths) out[p].hardlinks = joined;
  }
  // Content last: every stat above happened before any read.
  int rootfd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (const auto& rel : files) out[rel].sha256 = FileSha256(rootfd, rel);
  if (rootfd >= 0) ::close(rootfd);
  return out;
}

std::string DiffTrees(const std::map<std::string, TreeEntry>& a, const std::string& a_name,
                      const std::map<std::string, TreeEntry>& b, const std::string& b_name,
                      const TreeDiffOptions& opts) {
  std::ostringstream o;
  auto times = [&](const std::string& p) {
    return p != "." && std::ranges::find(opts.no_times, p) == opts.no_times.end();
  };
  for (const auto& [path, ea] : a) {
    auto it = b.find(path);
    if (it == b.end()) {
      o << "  only in " << a_name << ": " << path << "  " << ea.Describe() << "\n";
      continue;
    }
    TreeEntry ca = ea, cb = it->second;
    for (TreeEntry* e : {&ca, &cb}) {
      if (!opts.special_links && e->type != 'f' && e->type != 'd') {
        e->nlink = 0;
        e->hardlinks.clear();
      }
    }
    std::string da = ca.Describe(times(path), opts.dir_mtimes);
    std::string db = cb.Describe(times(path), opts.dir_mtimes);
    if (da != db) {
      o << "  " << path << "\n    " << a_name << ": " << da << "\n    " << b_name << ": " << db
        << "\n";
    }
  }
  for (const auto& [path, eb] : b) {
    if (!a.contains(path)) {
      o << "  only in " << b_name << ": " << path << "  " << eb.Describe() << "\n";
    }
  }
  return o.str();
}

void BuildBusyboxRootfs(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/bin");
  for (const char* d : {"proc", "sys", "dev", "tmp", "etc", "run"}) {
    fs::create_directories(dir + "/" + d);
  }
  fs::copy_file("/bin/busybox", dir + "/bin/busybox", fs::copy_options::overwrite_existing);
  ::chmod((dir + "/bin/busybox").c_str(), 0755);
  RunResult list = Run({"/bin/busybox", "--list"});
  for (const auto& applet : Lines(list.out)) {
    if (applet.empty() || applet == "busybox") continue;
    std::error_code ec;
    fs::create_symlink("busybox", dir + "/bin/" + applet, ec);
  }
}

void RemoveNamespaceCgroups(const std::string& ns) {
  namespace fs = std::filesystem;
  if (ns.empty() || ns.find('/') != std::string::npos || ns == "." || ns == "..") return;
  std::error_code ec;
  for (const auto& ctl : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    fs::path dir = ctl.path() / ns;
    if (fs::is_directory(dir, ec)) ::rmdir(dir.c_str());
  }
  ::rmdir(("/sys/fs/cgroup/" + ns).c_str());
}

void TasksTest::SetUp() {
  if (::access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "needs busybox-static";
  DaemonTest::SetUp();
  if (HasFatalFailure() || IsSkipped()) return;
  static int counter = 0;
  ns_ = "tasks-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  rootfs_ = tmp_ + "/busybox";
  runc_root_ = tmp_ + "/runc";
  BuildBusyboxRootfs(rootfs_);
}

void TasksTest::TearDown() {
  namespace fs = std::filesystem;
  if (!tmp_.empty() && daemon_pid_ >= 0 && !ns_.empty()) {
    for (const auto& id : Lines(Ctr({"tasks", "ls", "-q"}, ns_).out)) {
      Ctr({"tasks", "kill", "-a", "-s", "SIGKILL", id}, ns_);
      WaitStatus(id, "STOPPED", 5);
      Ctr({"tasks", "delete", "-f", id}, ns_);
    }
    for (const auto& id : Lines(Ctr({"containers", "ls", "-q"}, ns_).out)) {
      Ctr({"containers", "rm", id}, ns_);
    }
  }
  if (!tmp_.empty()) UnmountUnder(tmp_);
  DaemonTest::TearDown();
  // runc removes /<ns>/<id> but leaves the namespace's cgroup parent (as under containerd).
  RemoveNamespaceCgroups(ns_);
}

std::string TasksTest::TaskStatus(const std::string& id) {
  for (const auto& line : Lines(Ctr({"tasks", "ls"}, ns_).out)) {
    auto cells = Cells(line);
    if (cells.size() >= 3 && cells[0] == id) return cells[2];
  }
  return "";
}

bool TasksTest::WaitStatus(const std::string& id, const std::string& want, int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (TaskStatus(id) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace berth::testing
