// Integration-test harness: starts a real berthd on a temporary root, state dir and socket,
// and runs real client binaries (ctr, berth) against it. Every test gets its own daemon and
// its own temp dir; TearDown stops the daemon with SIGTERM and removes the dir.
//
// Tests need root (berthd manages mounts and processes) and /usr/bin/ctr; without them they
// skip with a message, they do not fail.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>
#include <unistd.h>

#include <map>
#include <string>
#include <string_view>
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

// sha256 of `data` as "sha256:<hex>".
std::string Sha256Digest(std::string_view data);
// gzip (RFC 1952, no name, mtime 0: deterministic) of `data` at `level`.
std::string Gzip(std::string_view data, int level = 6);
std::string ReadFileBytes(const std::string& path);
bool WriteFileBytes(const std::string& path, std::string_view data);

// Mount points at or below `prefix` in /proc/self/mountinfo, in mount order.
std::vector<std::string> MountsUnder(const std::string& prefix);
// Unmounts (MNT_DETACH, deepest first) everything MountsUnder(prefix) lists.
void UnmountUnder(const std::string& prefix);

// An OCI image layout written by hand under `dir` (oci-layout, index.json, blobs/sha256), for
// precise images: layers are given as tar bytes, configs and manifests are built here.
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:..."
  int64_t size = 0;
};
struct LayerSpec {
  std::string tar;    // uncompressed tar bytes
  bool gzip = true;   // else stored as a plain tar layer
  int level = 6;      // gzip level
};
struct ManifestInfo {
  Descriptor desc;    // the manifest
  Descriptor config;
  std::vector<Descriptor> layers;
  std::vector<std::string> diff_ids;
  std::string os = "linux", arch = "amd64", variant;
};
class OciLayoutBuilder {
 public:
  explicit OciLayoutBuilder(std::string dir);
  Descriptor AddBlob(const std::string& media_type, std::string_view data);
  ManifestInfo AddImage(const std::vector<LayerSpec>& layers, const std::string& arch = "amd64",
                        const std::string& variant = "");
  // An OCI index over `manifests`, each with its platform.
  Descriptor AddIndex(const std::vector<ManifestInfo>& manifests);
  // Names `desc` in index.json (org.opencontainers.image.ref.name = tag) and rewrites it.
  void Tag(const std::string& tag, const Descriptor& desc);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::pair<std::string, Descriptor>> tags_;
};
// `skopeo copy oci:<layout>:<tag> docker://<ref>` over plain HTTP, blobs and manifests as they
// are (`all`: every manifest of an index). Returns skopeo's stderr on failure, "" on success.
std::string PushOciLayout(const std::string& layout, const std::string& tag,
                          const std::string& ref, bool all = false);

// Tar bytes (GNU tar, owner 0:0, mtime 1700000000) of `files` (path → content), staged in a
// fresh directory under `workdir`.
std::string TarFiles(const std::string& workdir, const std::map<std::string, std::string>& files);

// One file system object of a tree, as the side-by-side tests compare them.
struct TreeEntry {
  char type = '?';        // d f l p c b s
  unsigned mode = 0;      // permission bits incl. setuid/setgid/sticky
  unsigned uid = 0, gid = 0;
  int64_t size = 0;       // regular files only
  std::string sha256;     // regular files: content digest
  std::string link;       // symlink target
  unsigned rdev_major = 0, rdev_minor = 0;
  unsigned nlink = 0;     // non-directories
  std::string hardlinks;  // non-directories: all paths of the tree sharing the inode, ','-joined
  int64_t mtime_s = 0, mtime_ns = 0, atime_s = 0, atime_ns = 0;
  std::map<std::string, std::string> xattrs;  // values hex-encoded
  // One line; directories never show their atime (listing a directory, even through a
  // read-only overlay mount, updates the atime of the layer directory beneath).
  std::string Describe(bool with_times = true, bool dir_mtime = true) const;
};
// Walks `root` (not following symlinks, not crossing into other mounts' special files): every
// path relative to root ("." for root itself). Stats everything before reading any content, so
// reading does not disturb the recorded atimes.
std::map<std::string, TreeEntry> ScanTree(const std::string& root);
struct TreeDiffOptions {
  std::vector<std::string> no_times;  // paths whose times are not compared ("." never is)
  bool dir_mtimes = true;             // compare the mtimes of directories
  bool special_links = true;          // compare link counts of non-regular files
};
// Human-readable differences between two scans ("" when equal).
std::string DiffTrees(const std::map<std::string, TreeEntry>& a, const std::string& a_name,
                      const std::map<std::string, TreeEntry>& b, const std::string& b_name,
                      const TreeDiffOptions& opts = {});

// `ctr --address <socket> --namespace <ns> args...` against any daemon.
RunResult CtrAt(const std::string& socket, const std::vector<std::string>& args,
                const std::string& ns = "default", int timeout_s = 120,
                const std::string& stdin_data = "");

// The real containerd (/usr/bin/containerd) on its own temp root, state dir, gRPC and ttrpc
// sockets, from a generated config.toml (version 2, CRI disabled, no TCP, no debug or metrics
// listener, opt plugin under the root). Stop (also the destructor) sends SIGTERM, then SIGKILL,
// unmounts whatever is left under its dirs and removes them.
class ContainerdDaemon {
 public:
  struct Options {
    std::string binary = "/usr/bin/containerd";
    std::string log_level = "info";
    std::string extra_config;                  // TOML appended to the generated config
    std::map<std::string, std::string> env;    // added to (or replacing in) our environment
  };
  ContainerdDaemon() = default;
  ContainerdDaemon(const ContainerdDaemon&) = delete;
  ContainerdDaemon& operator=(const ContainerdDaemon&) = delete;
  ~ContainerdDaemon() { Stop(); }

  static bool Available() { return ::access("/usr/bin/containerd", X_OK) == 0; }
  // Everything lives under `dir` (created; removed by Stop). Returns false (and records a
  // failure) if containerd did not answer `ctr version` within 15 s.
  bool Start(const std::string& dir, const Options& opts);
  bool Start(const std::string& dir) { return Start(dir, Options{}); }
  void Stop();
  // SIGKILL without cleanup of the dirs (a crash); Start again on the same dir to restart.
  void Kill();

  RunResult Ctr(const std::vector<std::string>& args, const std::string& ns = "default",
                int timeout_s = 120, const std::string& stdin_data = "") const {
    return CtrAt(socket_, args, ns, timeout_s, stdin_data);
  }
  std::string Log() const;
  const std::string& dir() const { return dir_; }
  const std::string& root() const { return root_; }
  const std::string& state() const { return state_; }
  const std::string& socket() const { return socket_; }
  const std::string& config_path() const { return config_; }
  pid_t pid() const { return pid_; }

 private:
  std::string dir_, root_, state_, socket_, config_, log_;
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

  // Set before DaemonTest::SetUp to change how berthd starts: `daemon_wrapper_` prefixes its
  // argv (an absolute path first, e.g. /usr/bin/unshare ... to give it a private mount
  // namespace), `daemon_config_` is written to its config.toml.
  std::vector<std::string> daemon_wrapper_;
  std::string daemon_config_;

  std::string tmp_;      // removed in TearDown
  std::string root_;     // tmp_/root
  std::string state_;    // tmp_/state
  std::string socket_;   // tmp_/state/berthd.sock
  std::string log_path_; // berthd's stderr
  pid_t daemon_pid_ = -1;
};

// A busybox-static root filesystem under `dir`: /bin/busybox, a symlink per applet, and the
// empty directories runc mounts over (proc sys dev tmp etc run).
void BuildBusyboxRootfs(const std::string& dir);

// Removes the cgroup parents runc leaves for a containerd namespace (/sys/fs/cgroup/<ctl>/<ns>
// on cgroup v1, /sys/fs/cgroup/<ns> on v2); only empty ones go.
void RemoveNamespaceCgroups(const std::string& ns);

// A DaemonTest for running containers: a unique namespace (so cgroups never collide), a
// busybox-static rootfs and a runc root under the temp dir. Skips without /bin/busybox.
// TearDown kills and deletes whatever tasks and containers a test left, unmounts what is
// under the temp dir, and removes the namespace's cgroup parents runc leaves behind.
class TasksTest : public DaemonTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The STATUS column of the task list for `id` ("" if not listed); `ctr tasks ls` by default.
  virtual std::string TaskStatus(const std::string& id);
  // Polls TaskStatus until it is `want`, at most `seconds`.
  bool WaitStatus(const std::string& id, const std::string& want, int seconds = 10);

  std::string ns_;         // unique per test
  std::string rootfs_;     // tmp_/busybox
  std::string runc_root_;  // tmp_/runc, for --runc-root
};

}  // namespace berth::testing
