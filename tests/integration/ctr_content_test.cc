// The content store through the real ctr: ingest/ls/get/label/rm, commit checks, active
// ingests, a daemon killed mid-ingest (reliability-anchors T11/T12), and `ctr content fetch`
// from a local docker-registry (no network: the image is built with umoci from busybox-static
// and pushed with skopeo).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"

extern char** environ;

namespace berth::testing {
namespace {

// The harness's Run, under a name gtest's Test::Run does not hide inside fixtures.
RunResult Exec(const std::vector<std::string>& argv, const std::string& stdin_data = "",
               int timeout_s = 60) {
  return Run(argv, stdin_data, timeout_s);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

std::string ReadFileText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool HasBinary(const std::string& name) {
  return Exec({"sh", "-c", "command -v " + name}, "", 10).exit_code == 0;
}

// sha256 of a file via coreutils, as "sha256:<hex>"; "" on failure.
std::string Sha256Of(const std::string& path) {
  RunResult r = Exec({"sha256sum", "--", path}, "", 60);
  if (r.exit_code != 0 || r.out.size() < 64) return "";
  return "sha256:" + r.out.substr(0, 64);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// A child process whose stdin we feed by hand (a slow client), output to files.
class FedChild {
 public:
  bool Start(const std::vector<std::string>& argv, const std::string& out_path) {
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    if (rc != 0) {
      ::close(in[1]);
      pid_ = -1;
      return false;
    }
    stdin_ = in[1];
    return true;
  }
  bool Feed(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(stdin_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void CloseStdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }
  // Exit code (128+N on signal N); -2 on timeout (then killed).
  int Wait(int timeout_s = 60) {
    CloseStdin();
    for (int i = 0; i < timeout_s * 20 && pid_ > 0; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Kill();
    return -2;
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  ~FedChild() {
    CloseStdin();
    Kill();
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
};

class CtrContentTest : public DaemonTest {
 protected:
  void SetUp() override {
    // A slow reader must not kill us when it goes away (the daemon is killed mid-ingest).
    ::signal(SIGPIPE, SIG_IGN);
    DaemonTest::SetUp();
  }
  void TearDown() override {
    registry_.Stop();
    DaemonTest::TearDown();
  }

  std::vector<std::string> CtrArgv(const std::vector<std::string>& args,
                                   const std::string& ns = "default") {
    std::vector<std::string> argv = {"/usr/bin/ctr", "--address", socket_, "--namespace", ns};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  RunResult CtrIn(const std::vector<std::string>& args, const std::string& stdin_data,
                  const std::string& ns = "default") {
    return Exec(CtrArgv(args, ns), stdin_data, 120);
  }
  // `ctr ... < file`: stdin is a regular file, which ctr can seek to resume an ingest.
  RunResult CtrFromFile(const std::vector<std::string>& args, const std::string& file,
                        const std::string& ns = "default") {
    std::string cmd = "exec";
    for (const auto& a : CtrArgv(args, ns)) cmd += " '" + a + "'";
    cmd += " < '" + file + "'";
    return Exec({"sh", "-c", cmd}, "", 120);
  }

  std::string BlobDir() const { return root_ + "/content/blobs/sha256"; }

  // Every file under blobs/ is complete: it hashes to its name. Returns the digests.
  std::set<std::string> VerifyBlobs() {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(BlobDir(), ec)) {
      std::string name = e.path().filename();
      std::string got = Sha256Of(e.path());
      EXPECT_EQ(got, "sha256:" + name) << "blob file " << e.path() << " does not match its name";
      struct stat st;
      EXPECT_EQ(::stat(e.path().c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0222, 0u) << e.path() << " is writable";
      out.insert("sha256:" + name);
    }
    return out;
  }

  std::set<std::string> ListDigests(const std::string& ns = "default") {
    RunResult r = Ctr({"content", "ls", "-q"}, ns);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto lines = Lines(r.out);
    return {lines.begin(), lines.end()};
  }

  // `ctr content active` rows as ref → size text.
  std::map<std::string, std::string> Active() {
    RunResult r = Ctr({"content", "active"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, std::string> out;
    auto lines = Lines(r.out);
    for (size_t i = 1; i < lines.size(); ++i) {
      std::istringstream in(lines[i]);
      std::string ref, size;
      in >> ref >> size;
      out[ref] = size;
    }
    return out;
  }

  // Polls `ctr content active` until `ref` shows `size` (ctr's units.HumanSize text).
  bool WaitActive(const std::string& ref, const std::string& size, int timeout_s = 20) {
    for (int i = 0; i < timeout_s * 10; ++i) {
      auto a = Active();
      if (a.contains(ref) && a[ref] == size) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // --- local registry: LocalRegistry from the harness ---------------------------------


  // --- an image in the local registry ----------------------------------------------------
  struct PushedImage {
    std::string ref;                // 127.0.0.1:PORT/test/busybox:1
    std::string manifest;           // digest
    std::string layer;              // digest of its only layer
    std::set<std::string> digests;  // manifest, config and layers
  };
  // Builds an OCI image holding busybox with umoci (offline), starts a registry and pushes
  // the image with skopeo. Skips when a tool or a service the fetch needs is missing.
  void PushBusyboxImage(PushedImage* out) {
    for (const char* bin : {"docker-registry", "skopeo", "umoci", "sha256sum"}) {
      if (!HasBinary(bin)) GTEST_SKIP() << "needs " << bin << " (scripts/install-deps.sh)";
    }
    if (::access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "needs busybox-static";
    RunResult plugins = Ctr({"plugins", "ls"});
    if (plugins.out.find("leases") == std::string::npos ||
        plugins.out.find("images") == std::string::npos) {
      GTEST_SKIP() << "ctr content fetch needs the Leases and Images services";
    }
    std::string layout = tmp_ + "/oci";
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"umoci", "init", "--layout", layout},
             {"umoci", "new", "--image", layout + ":1"},
             {"umoci", "insert", "--image", layout + ":1", "/bin/busybox", "/bin/busybox"},
             {"umoci", "config", "--image", layout + ":1", "--config.cmd", "/bin/busybox"}}) {
      RunResult r = Exec(cmd, "", 120);
      ASSERT_EQ(r.exit_code, 0) << cmd[0] << " " << cmd[1] << ": " << r.err;
    }
    ASSERT_TRUE(registry_.Start(tmp_ + "/registry"));
    out->ref = registry_.addr() + "/test/busybox:1";
    RunResult r = Exec({"skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                        "oci:" + layout + ":1", "docker://" + out->ref},
                       "", 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // What the registry serves: the manifest and the blobs it names.
    auto index = nlohmann::json::parse(ReadFileText(layout + "/index.json"));
    out->manifest = index["manifests"][0]["digest"];
    auto manifest =
        nlohmann::json::parse(ReadFileText(layout + "/blobs/sha256/" + out->manifest.substr(7)));
    out->digests = {out->manifest, manifest["config"]["digest"]};
    for (const auto& l : manifest["layers"]) out->digests.insert(l["digest"].get<std::string>());
    out->layer = manifest["layers"][0]["digest"];
  }
  LocalRegistry registry_;
};

TEST_F(CtrContentTest, IngestListGetRoundTrip) {
  std::string data = RandomBytes((3 << 20) + 17, 1);
  data[100] = '\0';  // binary-safe
  WriteFile(tmp_ + "/blob.bin", data);
  std::string dgst = Sha256Of(tmp_ + "/blob.bin");
  ASSERT_FALSE(dgst.empty());

  RunResult r = CtrIn({"content", "ingest", "--expected-digest", dgst, "--expected-size",
                       std::to_string(data.size()), "roundtrip"},
                      data);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ListDigests(), std::set<std::string>{dgst});
  r = Ctr({"content", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(dgst), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3.146MB"), std::string::npos) << r.out;

  r = Ctr({"content", "get", dgst});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out == data) << "content get returned " << r.out.size() << " bytes, want "
                             << data.size();
  EXPECT_EQ(VerifyBlobs(), std::set<std::string>{dgst});
  EXPECT_TRUE(Active().empty());

  // Ingesting it again is a no-op success (AlreadyExists at open).
  r = CtrIn({"content", "ingest", "--expected-digest", dgst, "again"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Without an expected digest, the duplicate is found at commit; still a success for ctr.
  r = CtrIn({"content", "ingest", "again-unannounced"}, data);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Active().empty());

  // Other namespaces do not see it; ingesting there links the same file.
  r = Ctr({"content", "get", dgst}, "other");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
  // The daemon offers the blob it already has as a finished ("shared") write, so ctr seeks
  // its stdin to the end: that needs a file, as with containerd.
  r = CtrFromFile({"content", "ingest", "--expected-digest", dgst, "x"}, tmp_ + "/blob.bin",
                  "other");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ListDigests("other"), std::set<std::string>{dgst});
  EXPECT_EQ(VerifyBlobs().size(), 1u);

  // An empty blob works too.
  r = CtrIn({"content", "ingest", "empty"}, "");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ListDigests().contains(
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

TEST_F(CtrContentTest, LabelAndRemove) {
  RunResult r = CtrIn({"content", "ingest", "lbl"}, "labelled content");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string dgst = *ListDigests().begin();

  r = Ctr({"content", "label", dgst, "foo=bar", "containerd.io/gc.root=2024"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("foo=bar"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("containerd.io/gc.root=2024"), std::string::npos) << r.out;
  r = Ctr({"content", "ls"});
  EXPECT_NE(r.out.find("foo=bar"), std::string::npos) << r.out;
  r = Ctr({"content", "ls", "-q", "labels.foo==bar"});
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{dgst});
  r = Ctr({"content", "ls", "-q", "labels.foo==nope"});
  EXPECT_TRUE(Lines(r.out).empty()) << r.out;

  // "foo=" removes foo, leaves the rest.
  r = Ctr({"content", "label", dgst, "foo="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("foo="), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("containerd.io/gc.root=2024"), std::string::npos) << r.out;

  r = Ctr({"content", "label", "sha256:nope", "a=b"});
  EXPECT_NE(r.exit_code, 0);

  r = Ctr({"content", "rm", dgst});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), std::vector<std::string>{dgst});
  EXPECT_TRUE(ListDigests().empty());
  r = Ctr({"content", "get", dgst});
  EXPECT_NE(r.exit_code, 0);
  // ctr treats NotFound as "nothing to delete".
  r = Ctr({"content", "rm", dgst});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Lines(r.out).empty());
}

TEST_F(CtrContentTest, WrongExpectationsCommitNothing) {
  std::string data = RandomBytes(200000, 2);
  std::string other = "sha256:" + std::string(64, 'a');
  RunResult r = CtrIn({"content", "ingest", "--expected-digest", other, "bad-digest"}, data);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("failed precondition"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(other), std::string::npos) << r.err;

  // Smaller than the data: the server's size check refuses the commit.
  r = CtrIn({"content", "ingest", "--expected-size", std::to_string(data.size() - 1), "bad-size"},
            data);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("failed precondition"), std::string::npos) << r.err;
  // Larger than the data: ctr notices the short input itself; nothing is committed either.
  r = CtrIn(
      {"content", "ingest", "--expected-size", std::to_string(data.size() + 1), "short-input"},
      data);
  EXPECT_NE(r.exit_code, 0);

  EXPECT_TRUE(ListDigests().empty());
  EXPECT_TRUE(VerifyBlobs().empty());
  // A malformed expected digest never reaches the store.
  r = CtrIn({"content", "ingest", "--expected-digest", "sha256:../../x", "evil"}, data);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(VerifyBlobs().empty());
}

TEST_F(CtrContentTest, ActiveShowsSlowIngest) {
  std::string data = RandomBytes((3 << 20) / 2, 3);  // 1.5 MiB: ctr sends in 1 MiB chunks
  FedChild child;
  ASSERT_TRUE(child.Start(CtrArgv({"content", "ingest", "slow-ref"}), tmp_ + "/slow.out"));
  ASSERT_TRUE(child.Feed(std::string_view(data).substr(0, data.size() - 1000)));
  EXPECT_TRUE(WaitActive("slow-ref", "1.049MB")) << "ctr content active never showed 1 MiB";
  ASSERT_TRUE(child.Feed(std::string_view(data).substr(data.size() - 1000)));
  EXPECT_EQ(child.Wait(), 0) << ReadFileText(tmp_ + "/slow.out");
  EXPECT_FALSE(Active().contains("slow-ref"));
  EXPECT_EQ(ListDigests().size(), 1u);
  RunResult r = Ctr({"content", "get", *ListDigests().begin()});
  EXPECT_TRUE(r.out == data);
}

TEST_F(CtrContentTest, KilledDaemonLeavesResumableIngest) {
  const size_t kSize = 24 << 20;
  std::string data = RandomBytes(kSize, 4);
  WriteFile(tmp_ + "/big.bin", data);
  std::string dgst = Sha256Of(tmp_ + "/big.bin");
  {
    FedChild child;
    ASSERT_TRUE(child.Start(
        CtrArgv({"content", "ingest", "--expected-size", std::to_string(kSize), "big-ref"}),
        tmp_ + "/big.out"));
    ASSERT_TRUE(child.Feed(std::string_view(data).substr(0, (5 << 20) + 4096)));
    ASSERT_TRUE(WaitActive("big-ref", "5.243MB")) << ReadFileText(tmp_ + "/big.out");
    KillDaemon();
    EXPECT_NE(child.Wait(), 0);  // the client lost its daemon
  }
  ASSERT_TRUE(StartDaemon());
  // Nothing half-written is visible, and the ingest is still there at its offset.
  EXPECT_TRUE(VerifyBlobs().empty());
  EXPECT_TRUE(ListDigests().empty());
  auto active = Active();
  ASSERT_TRUE(active.contains("big-ref"));
  EXPECT_EQ(active["big-ref"], "5.243MB");

  // Resume: ctr seeks its (file) stdin to the offset the daemon reports.
  RunResult r = CtrFromFile({"content", "ingest", "--expected-digest", dgst, "--expected-size",
                             std::to_string(kSize), "big-ref"},
                            tmp_ + "/big.bin");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ListDigests(), std::set<std::string>{dgst});
  EXPECT_EQ(VerifyBlobs(), std::set<std::string>{dgst});
  EXPECT_TRUE(Active().empty());
  r = Ctr({"content", "get", dgst});
  EXPECT_TRUE(r.out == data);
  // And it survives a clean restart — once something references it: the start-up GC pass
  // collects unreferenced content, as containerd's does.
  ASSERT_EQ(Ctr({"content", "label", dgst, "containerd.io/gc.root=1"}).exit_code, 0);
  EXPECT_EQ(StopDaemon(), 0);
  ASSERT_TRUE(StartDaemon());
  EXPECT_EQ(ListDigests(), std::set<std::string>{dgst});
  EXPECT_EQ(VerifyBlobs(), std::set<std::string>{dgst});
}

TEST_F(CtrContentTest, FetchFromLocalRegistry) {
  PushedImage img;
  ASSERT_NO_FATAL_FAILURE(PushBusyboxImage(&img));
  if (IsSkipped()) return;
  const std::string& image = img.ref;
  const std::set<std::string>& want = img.digests;

  RunResult r = Ctr({"content", "fetch", "--plain-http", image});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::set<std::string> have = ListDigests();
  for (const auto& d : want) EXPECT_TRUE(have.contains(d)) << d << " not fetched";
  // Every blob is byte-exact: on disk and through ctr content get.
  std::set<std::string> on_disk = VerifyBlobs();
  for (const auto& d : want) {
    EXPECT_TRUE(on_disk.contains(d)) << d;
    RunResult get = Exec(
        {"sh", "-c", "/usr/bin/ctr --address '" + socket_ + "' content get " + d + " | sha256sum"},
        "", 60);
    EXPECT_EQ("sha256:" + get.out.substr(0, 64), d);
  }
  EXPECT_TRUE(Active().empty());
  // Fetching again finds everything present.
  r = Ctr({"content", "fetch", "--plain-http", image});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(VerifyBlobs(), on_disk);
}

// T9: a registry serving the wrong bytes for a layer. The commit is refused with both digests
// named, nothing becomes visible, and nothing half-written lands in blobs/.
TEST_F(CtrContentTest, FetchOfCorruptBlobCommitsNothing) {
  PushedImage img;
  ASSERT_NO_FATAL_FAILURE(PushBusyboxImage(&img));
  if (IsSkipped()) return;
  std::string path = registry_.BlobPath(img.layer);
  std::string bytes = ReadFileText(path);
  ASSERT_FALSE(bytes.empty()) << path;
  bytes[bytes.size() / 2] ^= 0x5a;  // same size, different bytes
  WriteFile(path, bytes);

  RunResult r = Ctr({"content", "fetch", "--plain-http", img.ref});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("unexpected commit digest"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(img.layer), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("failed precondition"), std::string::npos) << r.err;
  EXPECT_FALSE(ListDigests().contains(img.layer));
  EXPECT_FALSE(VerifyBlobs().contains(img.layer));
}

}  // namespace
}  // namespace berth::testing
