// Helpers for the OCI runtime core tests: the one RuntimeEnv of the test process, temp dirs,
// FIFOs, reading with deadlines, and busybox bundles for runc/crun.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/fs.h"
#include "oci/container.h"

namespace berth::oci::testing {

// One per process (subreaper, signalfd): created on first use, on the gtest main thread.
inline RuntimeEnv* Env() {
  static RuntimeEnv* env = [] {
    auto e = RuntimeEnv::Create();
    if (!e) {
      std::fprintf(stderr, "RuntimeEnv: %s\n", e.error().ToString().c_str());
      std::abort();
    }
    return e->release();
  }();
  return env;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/berth-rt-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string MakeFifo(const std::string& path) {
  if (::mkfifo(path.c_str(), 0600) != 0) std::abort();
  return path;
}

// Opens a FIFO the way a client does before Create: reader O_NONBLOCK (never blocks).
inline UniqueFd OpenFifoReader(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
}

// Reads until `done(data)` is true, EOF, or the timeout. A FIFO that never had a writer does
// not report EOF (poll gives no POLLHUP before the first writer), so early calls just wait.
inline std::string ReadUntil(int fd, const std::function<bool(const std::string&)>& done,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::string data;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(data)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;  // EOF: every writer came and went
    } else if (errno != EAGAIN && errno != EINTR) {
      break;
    }
  }
  return data;
}

inline std::string ReadToEof(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return ReadUntil(
      fd, [](const std::string&) { return false; }, timeout);
}

inline bool WriteString(int fd, const std::string& s) {
  return ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
}

inline std::string Slurp(const std::string& path) {
  auto r = ReadFile(path, 16 << 20);
  return r ? *r : "";
}

// Runs a host command to completion through the reaper (system() would race it for the exit).
inline CommandResult RunHost(const std::vector<std::string>& argv, const std::string& cwd = "") {
  CommandOptions o;
  o.spec.argv = argv;
  o.spec.cwd = cwd;
  o.timeout = std::chrono::seconds(60);
  auto r = RunCommand(*Env()->reaper(), o);
  if (!r) {
    std::fprintf(stderr, "run %s: %s\n", argv[0].c_str(), r.error().ToString().c_str());
    std::abort();
  }
  return *r;
}

inline std::set<int> OpenFds(pid_t pid) {
  std::set<int> fds;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    fds.insert(std::atoi(e.path().filename().c_str()));
  }
  return fds;
}

// A bundle: rootfs with a static busybox and its applets, config.json from `runc spec`.
struct BundleOptions {
  std::vector<std::string> args;
  bool terminal = false;
  bool pid_namespace = true;
  std::string cgroups_path;  // linux.cgroupsPath
  int64_t memory_limit = 0;  // bytes; also the swap limit (no swap: OOM instead)
};

inline Status MakeBundle(const std::string& dir, const BundleOptions& o) {
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/rootfs/bin");
  fs::create_directories(dir + "/rootfs/proc");
  fs::create_directories(dir + "/rootfs/dev");
  fs::create_directories(dir + "/rootfs/sys");
  fs::create_directories(dir + "/rootfs/tmp");
  fs::copy_file("/bin/busybox", dir + "/rootfs/bin/busybox");
  for (const char* applet :
       {"sh", "echo", "sleep", "cat", "ls", "stty", "head", "dd", "true", "kill", "tr", "wc"}) {
    fs::create_symlink("busybox", dir + "/rootfs/bin/" + applet);
  }
  auto spec = RunHost({"runc", "spec"}, dir);
  if (spec.exit.status != 0) return Internal("runc spec: " + spec.err);
  auto cfg = nlohmann::json::parse(Slurp(dir + "/config.json"));
  cfg["process"]["args"] = o.args;
  cfg["process"]["terminal"] = o.terminal;
  cfg["process"]["env"] = {"PATH=/bin", "TERM=xterm"};
  cfg["root"]["path"] = "rootfs";
  cfg["root"]["readonly"] = true;
  cfg["hostname"] = "berth-test";
  auto& ns = cfg["linux"]["namespaces"];
  nlohmann::json kept = nlohmann::json::array();
  for (auto& n : ns) {
    if (n["type"] == "network") continue;  // nothing to gain, and it costs a netns per test
    if (n["type"] == "pid" && !o.pid_namespace) continue;
    kept.push_back(n);
  }
  ns = kept;
  if (!o.cgroups_path.empty()) cfg["linux"]["cgroupsPath"] = o.cgroups_path;
  if (o.memory_limit) {
    cfg["linux"]["resources"]["memory"] = {{"limit", o.memory_limit}, {"swap", o.memory_limit}};
  }
  return WriteFileAtomic(dir + "/config.json", cfg.dump(1), 0644);
}

// Removes `<hierarchy>/<name>` and everything below it in every mounted cgroup hierarchy.
inline void RemoveCgroupTree(const std::string& name) {
  const CgroupLayout& layout = Env()->cgroups();
  std::vector<std::string> roots;
  for (auto& h : layout.v1) roots.push_back(h.mountpoint);
  if (!layout.unified_mountpoint.empty()) roots.push_back(layout.unified_mountpoint);
  for (auto& root : roots) {
    std::string top = root + "/" + name;
    std::error_code ec;
    if (!std::filesystem::exists(top, ec)) continue;
    std::vector<std::string> dirs;
    for (auto it = std::filesystem::recursive_directory_iterator(top, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path());
    }
    std::sort(dirs.begin(), dirs.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
    for (auto& d : dirs) ::rmdir(d.c_str());
    ::rmdir(top.c_str());
  }
}

}  // namespace berth::oci::testing
