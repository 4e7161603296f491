// `berth run|create|start|exec|attach|kill|ps|pause|resume|rm` and `berth tasks ls` against a
// real berthd (its default io.containerd.runc.v2 is our containerd-shim-berth-v2; one test
// maps it to the real containerd-shim-runc-v2), with a busybox-static root filesystem
// (a --rootfs directory, or an imported OCI image holding the same files). runc keeps its
// state under the test's temp dir (--runc-root), the FIFOs live beside the test's socket, and
// every namespace is unique so cgroups never collide.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kImage[] = "example.com/berth/busybox:run";

class BerthTasksCliTest : public TasksTest {
 protected:
  // An OCI image of the busybox tree whose config sets Env, WorkingDir and Cmd, imported
  // into the test's namespace (not unpacked: `berth run` unpacks it).
  void ImportImage(const std::string& tag = kImage, const std::string& user = "") {
    std::string layer_tar = tmp_ + "/layer.tar";
    RunResult t = berth::testing::Run(
        {"tar", "-C", rootfs_, "--owner=0", "--group=0", "--numeric-owner", "-cf", layer_tar, "."});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    std::string layer = ReadFileBytes(layer_tar);
    OciLayoutBuilder b(tmp_ + "/layout");
    Descriptor blob = b.AddBlob("application/vnd.oci.image.layer.v1.tar+gzip", Gzip(layer, 1));
    nlohmann::json config = {{"architecture", "amd64"},
                             {"os", "linux"},
                             {"config",
                              {{"Env", {"PATH=/bin", "GREETING=hello"}},
                               {"WorkingDir", "/tmp"},
                               {"Cmd", {"/bin/sh", "-c", "echo $GREETING from $(pwd)"}}}},
                             {"rootfs", {{"type", "layers"}, {"diff_ids", {Sha256Digest(layer)}}}}};
    if (!user.empty()) config["config"]["User"] = user;
    Descriptor cfg = b.AddBlob("application/vnd.oci.image.config.v1+json", config.dump());
    auto desc = [](const Descriptor& d) {
      return nlohmann::json{{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
    };
    nlohmann::json manifest = {{"schemaVersion", 2},
                               {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                               {"config", desc(cfg)},
                               {"layers", {desc(blob)}}};
    Descriptor m = b.AddBlob("application/vnd.oci.image.manifest.v1+json", manifest.dump());
    b.Tag(tag, m);
    std::string tar = tmp_ + "/image.tar";
    t = berth::testing::Run({"tar", "-C", b.dir(), "-cf", tar, "."});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    RunResult r = Ctr({"images", "import", "--no-unpack", tar}, ns_);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  std::vector<std::string> BerthArgv(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinaryPath("berth"), "--address", socket_, "--namespace", ns_};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  RunResult B(const std::vector<std::string>& args, const std::string& stdin_data = "") {
    return berth::testing::Run(BerthArgv(args), stdin_data);
  }
  // `berth run [flags] --runc-root R --rootfs DIR ID CMD...`
  std::vector<std::string> RunRootfs(const std::vector<std::string>& flags, const std::string& id,
                                     const std::vector<std::string>& cmd) {
    std::vector<std::string> a = {"run"};
    a.insert(a.end(), flags.begin(), flags.end());
    if (!runtime_.empty()) a.insert(a.end(), {"--runtime", runtime_});
    a.insert(a.end(), {"--runc-root", runc_root_, "--rootfs", rootfs_, id});
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }

  // The STATUS column of `berth tasks ls` for `id` ("" if not listed): our CLI's table.
  std::string TaskStatus(const std::string& id) override {
    for (const auto& line : Lines(B({"tasks", "ls"}).out)) {
      auto cells = Cells(line);
      if (cells.size() >= 3 && cells[0] == id) return cells[2];
    }
    return "";
  }
  // Shell-quoted, for script(1)'s -c.
  static std::string ShellJoin(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += (out.empty() ? "" : " ") + q + "'";
    }
    return out;
  }

  std::string runtime_;  // --runtime for RunRootfs ("" = berth's default: io.containerd.runc.v2, our shim)
};

TEST_F(BerthTasksCliTest, RunRmRootfsOutputAndExitCode) {
  RunResult r = B(RunRootfs({"--rm"}, "echo1", {"/bin/echo", "hi"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "");

  r = B(RunRootfs({"--rm"}, "exit7", {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}));
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");

  // stdin reaches the process; its end closes the process's stdin.
  r = B(RunRootfs({"--rm"}, "cat1", {"/bin/sh", "-c", "cat; echo done"}), "piped\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "piped\ndone\n");

  // Environment and working directory flags; like containerd, a --rootfs spec has no PATH.
  r = B(RunRootfs({"--rm", "--env", "A=1", "--cwd", "/tmp"}, "env1",
                  {"/bin/sh", "-c", "echo A=$A; pwd"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "A=1\n/tmp\n");
  r = B(RunRootfs({"--rm"}, "nopath", {"echo", "hi"}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");

  // --rm left nothing: no task, no container, no bundle, no FIFOs.
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  EXPECT_FALSE(fs::exists(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/echo1"));
  std::error_code ec;
  EXPECT_TRUE(!fs::exists(state_ + "/fifo") || fs::is_empty(state_ + "/fifo", ec));
}

TEST_F(BerthTasksCliTest, RunWithoutRmKeepsTheContainer) {
  RunResult r = B(RunRootfs({}, "keep", {"/bin/true"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");  // the task is deleted, as by ctr run
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "keep\n");
  // The spec is containerd's default for linux plus our flags.
  RunResult info = B({"containers", "info", "--spec", "keep"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto spec = nlohmann::json::parse(info.out);
  EXPECT_EQ(spec["root"]["path"], rootfs_);
  EXPECT_EQ(spec["process"]["args"], nlohmann::json({"/bin/true"}));
  EXPECT_EQ(spec["linux"]["cgroupsPath"], "/" + ns_ + "/keep");
  EXPECT_EQ(spec["process"]["capabilities"]["bounding"].size(), 14u);
  EXPECT_EQ(spec["linux"]["namespaces"].size(), 5u);
  EXPECT_FALSE(spec["process"].contains("env")) << spec["process"];  // no PATH, as containerd
  r = B({"rm", "keep"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "keep\n");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
}

TEST_F(BerthTasksCliTest, MountReadOnlyPrivilegedNetHostLabels) {
  fs::create_directories(tmp_ + "/shared");
  ASSERT_TRUE(WriteFileBytes(tmp_ + "/shared/f.txt", "from the host\n"));
  fs::create_directories(rootfs_ + "/mnt");
  RunResult r = B(RunRootfs({"--rm", "--read-only", "--mount",
                             "type=bind,src=" + tmp_ + "/shared,dst=/mnt,options=rbind:ro"},
                            "m1", {"/bin/sh", "-c", "cat /mnt/f.txt; touch /x || echo ro-root"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n') + 1), "from the host\n");
  EXPECT_NE(r.out.find("ro-root"), std::string::npos) << r.out;

  r = B(RunRootfs({"--rm", "--privileged", "--net-host"}, "m2",
                  {"/bin/sh", "-c", "grep CapEff /proc/self/status; echo $HOSTNAME"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("CapEff:\t00000000a80425fb"), std::string::npos) << r.out;  // not default
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_NE(r.out.find(std::string(host) + "\n"), std::string::npos) << r.out;

  r = B({"create", "--label", "team=a", "--label", "tier=b", "--net-host", "--runc-root",
         runc_root_, "--rootfs", rootfs_, "m3", "/bin/true"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto spec = nlohmann::json::parse(B({"containers", "info", "--spec", "m3"}).out);
  EXPECT_EQ(spec["annotations"], nlohmann::json({{"team", "a"}, {"tier", "b"}}));
  for (const auto& ns : spec["linux"]["namespaces"]) EXPECT_NE(ns["type"], "network");
  EXPECT_EQ(B({"containers", "label", "m3"}).out, "team=a,tier=b\n");
  r = B({"run", "--rm", "--mount", "src=/x", "--rootfs", rootfs_, "m4", "/bin/true"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("destination"), std::string::npos) << r.err;
  EXPECT_EQ(B({"rm", "m3"}).exit_code, 0);
}

TEST_F(BerthTasksCliTest, RunImageUsesItsConfig) {
  ImportImage();
  if (HasFatalFailure()) return;
  RunResult r = B({"run", "--rm", "--runc-root", runc_root_, kImage, "img1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hello from /tmp\n");

  // Arguments replace the image's command (as ctr does); --env overrides the image's Env; the
  // image's PATH finds `sh`.
  r = B({"run", "--rm", "--runc-root", runc_root_, "--env", "GREETING=bye", kImage, "img2", "sh",
         "-c", "echo $GREETING; touch /written; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "bye\n");

  // --rm removed the containers and their snapshots; the unpacked layer stays with the image.
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  RunResult sn = Ctr({"snapshots", "ls"}, ns_);
  EXPECT_EQ(sn.out.find("img1"), std::string::npos) << sn.out;
  EXPECT_EQ(sn.out.find("img2"), std::string::npos) << sn.out;
  EXPECT_NE(sn.out.find("Committed"), std::string::npos) << sn.out;

  // create + start: the container record first, the task later.
  r = B({"create", "--runc-root", runc_root_, kImage, "later", "/bin/echo", "created"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "later\n");
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  r = B({"start", "later"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "created\n");
  EXPECT_EQ(B({"rm", "later"}).exit_code, 0);
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  EXPECT_EQ(Ctr({"snapshots", "ls"}, ns_).out.find("later"), std::string::npos);

  r = B({"run", "--rm", "no.such/image:tag", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
}

// containerd's WithUser: the image's User is looked up in the image's own /etc/passwd and
// /etc/group (read confined to the image root, never the host's).
TEST_F(BerthTasksCliTest, ImageUserResolvedInTheImage) {
  ASSERT_TRUE(WriteFileBytes(rootfs_ + "/etc/passwd",
                             "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/:/bin/sh\n"));
  ASSERT_TRUE(WriteFileBytes(rootfs_ + "/etc/group", "root:x:0:\nstaff:x:50:\n"));
  ImportImage("example.com/berth/user:app", "app");
  ImportImage("example.com/berth/user:appstaff", "app:staff");
  ImportImage("example.com/berth/user:uid", "1234");
  ImportImage("example.com/berth/user:ghost", "ghost");
  if (HasFatalFailure()) return;
  auto ids = [&](const std::string& image, const std::string& id) {
    RunResult r = B({"run", "--rm", "--runc-root", runc_root_, image, id, "/bin/sh", "-c",
                     "echo $(id -u):$(id -g)"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_EQ(ids("example.com/berth/user:app", "u1"), "1234:2345\n");
  EXPECT_EQ(ids("example.com/berth/user:appstaff", "u2"), "1234:50\n");
  EXPECT_EQ(ids("example.com/berth/user:uid", "u3"), "1234:2345\n");
  RunResult r = B({"run", "--rm", "--runc-root", runc_root_, "example.com/berth/user:ghost", "u4",
                   "/bin/true"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no user \"ghost\""), std::string::npos) << r.err;
  // Nothing left behind: no container, no snapshot but the image's layer, no temp mounts.
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  RunResult sn = Ctr({"snapshots", "ls"}, ns_);
  EXPECT_EQ(Lines(sn.out).size(), 2u) << sn.out;
  EXPECT_TRUE(MountsUnder("/tmp/berth-user-").empty());
}

TEST_F(BerthTasksCliTest, DetachedLifecycle) {
  RunResult r = B(RunRootfs({"-d"}, "life", {"/bin/sleep", "1000"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(TaskStatus("life"), "RUNNING");
  EXPECT_EQ(Ctr({"tasks", "ls", "-q"}, ns_).out, "life\n");  // the real ctr agrees

  r = B({"tasks", "ls"});
  ASSERT_EQ(Lines(r.out).size(), 2u) << r.out;
  EXPECT_EQ(Cells(Lines(r.out)[0]), (std::vector<std::string>{"TASK", "PID", "STATUS"}));
  std::string pid = Cells(Lines(r.out)[1])[1];
  EXPECT_GT(std::stoi(pid), 1);

  r = B({"exec", "--exec-id", "e1", "life", "/bin/sh", "-c", "echo from-exec; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "from-exec\n");
  r = B({"tasks", "exec", "life", "/bin/echo", "generated-id"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "generated-id\n");

  r = B({"ps", "life"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 2u) << r.out;
  EXPECT_EQ(Cells(Lines(r.out)[1])[0], pid);
  EXPECT_NE(Lines(r.out)[1].find("sleep 1000"), std::string::npos) << r.out;

  EXPECT_EQ(B({"pause", "life"}).out, "life\n");
  EXPECT_EQ(TaskStatus("life"), "PAUSED");
  EXPECT_EQ(B({"resume", "life"}).out, "life\n");
  EXPECT_EQ(TaskStatus("life"), "RUNNING");

  // rm refuses a running task; kill stops it; rm then removes task and container.
  r = B({"rm", "life"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("RUNNING"), std::string::npos) << r.err;
  EXPECT_EQ(TaskStatus("life"), "RUNNING");
  r = B({"kill", "-s", "KILL", "life"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitStatus("life", "STOPPED"));
  r = B({"--format", "json", "tasks", "ls"});
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u) << r.out;
  EXPECT_EQ(j[0]["exit_status"], 137);
  r = B({"rm", "life"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "life\n");
  EXPECT_NE(r.err.find("137"), std::string::npos) << r.err;
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(state_ + "/fifo", ec)) << ec.message();

  // rm -f kills a running (even paused) task first.
  ASSERT_EQ(B(RunRootfs({"-d"}, "forced", {"/bin/sleep", "1000"})).exit_code, 0);
  ASSERT_EQ(B({"tasks", "pause", "forced"}).exit_code, 0);
  r = B({"rm", "-f", "forced"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");

  r = B({"kill", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
}

TEST_F(BerthTasksCliTest, KillAllAndTasksRmKeepsContainer) {
  ASSERT_EQ(
      B(RunRootfs({"-d"}, "k", {"/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"})).exit_code, 0);
  ASSERT_TRUE(WaitStatus("k", "RUNNING"));
  for (int i = 0; i < 50 && Lines(B({"ps", "k"}).out).size() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Lines(B({"ps", "k"}).out).size(), 4u);  // header, sh, two sleeps
  EXPECT_EQ(B({"kill", "--all", "-s", "9", "k"}).exit_code, 0);
  ASSERT_TRUE(WaitStatus("k", "STOPPED"));
  RunResult r = B({"tasks", "rm", "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "k\n");
  EXPECT_EQ(B({"rm", "k"}).exit_code, 0);
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
}

TEST_F(BerthTasksCliTest, AttachReopensTheTasksFifos) {
  ASSERT_EQ(B(RunRootfs({"-d"}, "att",
                        {"/bin/sh", "-c", "echo early; read line; echo got $line; exit 4"}))
                .exit_code,
            0);
  ASSERT_TRUE(WaitStatus("att", "RUNNING"));
  RunResult r = B({"attach", "att"}, "hello\n");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  // Output written before we attached waited in the FIFO.
  EXPECT_EQ(r.out, "early\ngot hello\n");
  ASSERT_TRUE(WaitStatus("att", "STOPPED"));
  EXPECT_EQ(B({"rm", "att"}).exit_code, 0);
}

TEST_F(BerthTasksCliTest, SignalsAreForwarded) {
  // timeout(1) sends SIGTERM to berth after 2 s; berth passes it on; the shell's trap answers.
  std::vector<std::string> argv = {"timeout", "--preserve-status", "-s", "TERM", "3"};
  for (const auto& a : BerthArgv(RunRootfs({"--rm"}, "sig",
                                           {"/bin/sh", "-c",
                                            "trap 'echo got-term; exit 9' TERM; echo ready; "
                                            "while true; do sleep 0.1; done"}))) {
    argv.push_back(a);
  }
  RunResult r = berth::testing::Run(argv);
  EXPECT_EQ(r.exit_code, 9) << r.err;
  EXPECT_EQ(r.out, "ready\ngot-term\n");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
}

TEST_F(BerthTasksCliTest, TerminalThroughScript) {
  if (::access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "needs script(1)";
  std::string cmd = ShellJoin(BerthArgv(RunRootfs(
      {"--rm", "-t"}, "tty1", {"/bin/sh", "-c", "tty; echo TERM=$TERM; stty size; exit 5"})));
  RunResult r =
      berth::testing::Run({"script", "-qefc", "stty cols 91 rows 33; " + cmd, "/dev/null"});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TERM=xterm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("33 91"), std::string::npos) << r.out;  // ResizePty carried our size
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");

  // exec -t into a detached container.
  ASSERT_EQ(B(RunRootfs({"-d"}, "tty2", {"/bin/sleep", "1000"})).exit_code, 0);
  cmd = ShellJoin(BerthArgv({"exec", "-t", "tty2", "/bin/sh", "-c", "tty; exit 6"}));
  r = berth::testing::Run({"script", "-qefc", cmd, "/dev/null"});
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
  EXPECT_EQ(B({"rm", "-f", "tty2"}).exit_code, 0);
}

// The CLI does not care which shim serves the task: the same commands through the real
// containerd-shim-runc-v2 ([runtimes."io.containerd.runc.v2"] binary in berthd's config).
TEST_F(BerthTasksCliTest, SameCommandsOnTheRuncShim) {
  if (::access("/usr/bin/containerd-shim-runc-v2", X_OK) != 0) {
    GTEST_SKIP() << "needs containerd-shim-runc-v2";
  }
  ASSERT_EQ(StopDaemon(), 0);
  ASSERT_TRUE(WriteFileBytes(tmp_ + "/config.toml",
                             "version = 1\n[runtimes.\"io.containerd.runc.v2\"]\n"
                             "binary = \"/usr/bin/containerd-shim-runc-v2\"\n"));
  ASSERT_TRUE(StartDaemon());

  RunResult r = B(RunRootfs({"--rm"}, "b1", {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}));
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  r = B(RunRootfs({"--rm"}, "b2", {"/bin/sh", "-c", "cat; echo done"}), "piped\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "piped\ndone\n");

  ASSERT_EQ(B(RunRootfs({"-d"}, "b3", {"/bin/sh", "-c", "echo early; read l; echo got $l; exit 4"}))
                .exit_code,
            0);
  ASSERT_TRUE(WaitStatus("b3", "RUNNING"));
  r = B({"attach", "b3"}, "hello\n");
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(r.out, "early\ngot hello\n");
  ASSERT_TRUE(WaitStatus("b3", "STOPPED"));
  EXPECT_EQ(B({"rm", "b3"}).exit_code, 0);

  ASSERT_EQ(B(RunRootfs({"-d"}, "b4", {"/bin/sleep", "1000"})).exit_code, 0);
  r = B({"exec", "b4", "/bin/sh", "-c", "echo ex; exit 2"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "ex\n");
  r = B({"ps", "b4"});
  EXPECT_NE(r.out.find("sleep 1000"), std::string::npos) << r.out;
  ASSERT_EQ(B({"pause", "b4"}).exit_code, 0);
  EXPECT_EQ(TaskStatus("b4"), "PAUSED");
  ASSERT_EQ(B({"resume", "b4"}).exit_code, 0);
  EXPECT_EQ(TaskStatus("b4"), "RUNNING");
  r = B({"rm", "-f", "b4"});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  if (::access("/usr/bin/script", X_OK) == 0) {
    std::string cmd =
        ShellJoin(BerthArgv(RunRootfs({"--rm", "-t"}, "b5", {"/bin/sh", "-c", "tty; exit 5"})));
    r = berth::testing::Run({"script", "-qefc", cmd, "/dev/null"});
    EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
    EXPECT_NE(r.out.find("/dev/pts/"), std::string::npos) << r.out;
  }
  EXPECT_EQ(B({"tasks", "ls", "-q"}).out, "");
  EXPECT_EQ(Ctr({"containers", "ls", "-q"}, ns_).out, "");
}

}  // namespace
}  // namespace berth::testing
