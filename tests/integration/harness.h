// Integration-test harness: starts a real berthd on a temporary root, state dir and socket,
// and runs real client binaries (ctr, berth) against it. Every test gets its own daemon and
// its own temp dir; TearDown stops the daemon with SIGTERM and removes the dir.
//
// Tests need root (berthd manages mounts and processes) and /usr/bin/ctr; without them they
// skip with a message, they do not fail.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace berth::testing {

struct RunResult {
  int exit_code = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv (argv[0] looked up in PATH), captures stdout/stderr, waits at most `timeout_s`
// (then SIGKILL, exit_code = -2). `stdin_data` is fed to the child's stdin.
RunResult Run(const std::vector<std::string>& argv, const std::string& stdin_data = "",
              int timeout_s = 60, const std::map<std::string, std::string>& extra_env = {});

// Output helpers: the lines of `s`; the whitespace-separated cells of a table row (ctr pads
// its tabwriter columns with spaces).
std::vector<std::string> Lines(const std::string& s);
std::vector<std::string> Cells(const std::string& row);

// `n` pseudo-random bytes, the same for the same seed (xorshift): test payloads.
std::string RandomBytes(size_t n, unsigned seed);

// Path of a built binary (set by CMake): "berthd" or "berth".
std::string BinaryPath(const std::string& name);

// A one-layer linux/amd64 OCI image, written as an OCI-layout tar that `ctr images import`
// accepts. The layer holds `files` (path → content) as an uncompressed tar.
struct OciImage {
  std::string tar;              // path of the archive
  std::string manifest_digest;  // "sha256:..."
  std::string manifest_bytes;
  std::string config_digest;
  std::string layer_digest;
};
// Builds it under `workdir` (created if needed); `name` becomes the image name on import.
OciImage BuildOciImage(const std::string& workdir, const std::string& name,
                       const std::map<std::string, std::string>& files = {
                           {"hello.txt", "hello from berth\n"}});

// A local docker-registry (distribution) on 127.0.0.1 with a free port, storing under
// `dir`/data. Stopped (SIGTERM, then SIGKILL) by Stop or the destructor.
class LocalRegistry {
 public:
  LocalRegistry() = default;
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;
  ~LocalRegistry() { Stop(); }
  // Returns false (and records a failure if it started but never answered) on error.
  bool Start(const std::string& dir);
  void Stop();
  const std::string& addr() const { return addr_; }  // "127.0.0.1:PORT"
  // The registry's own copy of a blob (distribution's filesystem driver layout).
  std::string BlobPath(const std::string& digest) const;

 private:
  std::string dir_;
  std::string addr_;
  pid_t pid_ = -1;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts berthd with extra flags; returns false (and records a failure) if it did not come
  // up. SetUp calls it once with none.
  bool StartDaemon(const std::vector<std::string>& extra_args = {});
  // SIGTERM and wait; returns berthd's exit code.
  int StopDaemon();
  // SIGKILL and reap, as a crash.
  void KillDaemon();

  // `ctr --address <socket> --namespace <ns> args...`
  RunResult Ctr(const std::vector<std::string>& args, const std::string& ns = "default");
  // `berth --address <socket> --namespace <ns> args...`
  RunResult Berth(const std::vector<std::string>& args, const std::string& ns = "default");

  std::string tmp_;      // removed in TearDown
  std::string root_;     // tmp_/root
  std::string state_;    // tmp_/state
  std::string socket_;   // tmp_/state/berthd.sock
  std::string log_path_; // berthd's stderr
  pid_t daemon_pid_ = -1;
};

}  // namespace berth::testing
