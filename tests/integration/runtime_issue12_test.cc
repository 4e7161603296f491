// Issue 12, runtime items, with the real ctr: #9 shim sockets whatever the state dir's length,
// #10 user-namespaced containers (state 0711, bundle 0710 for the remapped root's group),
// #12 runtime io.containerd.runtime.v1.linux served through our shim, its errors compared with
// the real containerd 1.6's.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;
namespace cv1 = containerd::services::containers::v1;
namespace tv1 = containerd::services::tasks::v1;

constexpr char kImage[] = "example.com/berth/busybox:userns";

unsigned Mode(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class RuntimeIssue12Test : public TasksTest {
 protected:
  RunResult CtrRun(const std::vector<std::string>& flags, const std::string& id,
                   const std::vector<std::string>& cmd) {
    std::vector<std::string> a = {"run", "--runc-root", runc_root_, "--fifo-dir", tmp_ + "/fifo"};
    a.insert(a.end(), flags.begin(), flags.end());
    a.insert(a.end(), {"--rootfs", rootfs_, id});
    a.insert(a.end(), cmd.begin(), cmd.end());
    return Ctr(a, ns_);
  }
};

// #9: a state dir of 200 bytes puts the shim socket (<state>/s/<64 hex>) far past sun_path's
// 107 bytes; every container start used to fail. Runs, detaches, and survives a restart of
// berthd (recovery dials the long address again).
TEST_F(RuntimeIssue12Test, Issue12ShimSocketUnderLongStateDir) {
  ASSERT_EQ(StopDaemon(), 0);
  std::string long_state = tmp_ + "/";
  while (long_state.size() < 200) long_state += "long-state-dir/";
  long_state.pop_back();
  state_ = long_state;
  socket_ = tmp_ + "/berthd.sock";  // the gRPC socket itself must stay short, as containerd's
  ASSERT_TRUE(StartDaemon());

  RunResult r = CtrRun({"--rm"}, "short-lived", {"/bin/echo", "hello from a long state dir"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "hello from a long state dir\n");

  r = CtrRun({"-d"}, "detached", {"/bin/sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(WaitStatus("detached", "RUNNING"));
  std::string address =
      ReadFileBytes(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/detached/address");
  EXPECT_EQ(address.rfind("unix://" + state_ + "/s/", 0), 0u) << address;
  EXPECT_GT(address.size(), 200u);

  KillDaemon();
  ASSERT_TRUE(StartDaemon());
  EXPECT_TRUE(WaitStatus("detached", "RUNNING"));
  r = Ctr({"tasks", "kill", "-s", "SIGKILL", "detached"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(WaitStatus("detached", "STOPPED"));
  r = Ctr({"tasks", "delete", "detached"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // The shim went with its task, and its socket with it.
  bool empty = false;
  for (int i = 0; i < 50 && !empty; ++i) {
    std::error_code ec;
    empty = fs::is_empty(state_ + "/s", ec);
    if (!empty) usleep(100 * 1000);
  }
  EXPECT_TRUE(empty) << "shim sockets left in " << state_ << "/s";
}

// #10: a user-namespaced container (root = host uid/gid 1000) writes its rootfs. runc mounts
// the rootfs from inside the user namespace, so the host ids must traverse the state dir and
// the bundle: state 0711, bundle 0710 owned by the remapped root's group; the root stays 0700.
TEST_F(RuntimeIssue12Test, Issue12UserNamespacedContainerWritesRootfs) {
  // The temp dir is 0700 (mkdtemp); containerd's /run/containerd is 0711.
  ASSERT_EQ(::chmod(tmp_.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(runc_root_.c_str(), 0711) == 0 || errno == ENOENT, true);
  // The image: busybox, as one layer.
  std::string layer_tar = tmp_ + "/layer.tar";
  RunResult t = berth::testing::Run(
      {"tar", "-C", rootfs_, "--owner=0", "--group=0", "--numeric-owner", "-cf", layer_tar, "."});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  std::string layer = ReadFileBytes(layer_tar);
  OciLayoutBuilder b(tmp_ + "/layout");
  Descriptor blob = b.AddBlob("application/vnd.oci.image.layer.v1.tar", layer);
  nlohmann::json config = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"config", {{"Env", {"PATH=/bin"}}, {"Cmd", {"/bin/sh"}}}},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {Sha256Digest(layer)}}}}};
  Descriptor cfg = b.AddBlob("application/vnd.oci.image.config.v1+json", config.dump());
  auto desc = [](const Descriptor& d) {
    return nlohmann::json{{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
  };
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                             {"config", desc(cfg)},
                             {"layers", {desc(blob)}}};
  b.Tag(kImage, b.AddBlob("application/vnd.oci.image.manifest.v1+json", manifest.dump()));
  std::string tar = tmp_ + "/image.tar";
  t = berth::testing::Run({"tar", "-C", b.dir(), "-cf", tar, "."});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  RunResult r = Ctr({"images", "import", tar}, ns_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  // ctr chowns a copy of the image's snapshot to the mapped ids (WithRemappedSnapshot).
  std::vector<std::string> run = {"run", "-d", "--runc-root", runc_root_, "--fifo-dir",
                                  tmp_ + "/fifo", "--uidmap", "0:1000:65536", "--gidmap",
                                  "0:1000:65536", kImage, "userns"};
  run.insert(run.end(), {"sh", "-c", "echo written > /written && sleep 1000"});
  r = Ctr(run, ns_);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(WaitStatus("userns", "RUNNING")) << ReadFileBytes(log_path_);

  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/userns";
  struct stat st{};
  ASSERT_EQ(::stat(bundle.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0710u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(Mode(state_), 0711u);
  EXPECT_EQ(Mode(root_), 0700u);

  r = Ctr({"tasks", "exec", "--exec-id", "check", "userns", "sh", "-c",
           "cat /written; id -u; stat -c %u /written"},
          ns_);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "written\n0\n0\n");
  // Seen from the host, the file belongs to uid 1000.
  std::string pid = Cells(Lines(Ctr({"tasks", "ls"}, ns_).out).back())[1];
  ASSERT_EQ(::stat(("/proc/" + pid + "/root/written").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
}

// A container without mappings keeps a private bundle.
TEST_F(RuntimeIssue12Test, Issue12BundleStaysPrivateWithoutUserNamespace) {
  RunResult r = CtrRun({"-d"}, "plain", {"/bin/sleep", "1000"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(WaitStatus("plain", "RUNNING"));
  EXPECT_EQ(Mode(state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/plain"), 0700u);
}

// containerd.linux.runc.RuncOptions {1 runtime, 2 runtime_root}, encoded by hand.
std::string RuncOptionsV1(const std::string& runtime, const std::string& root) {
  std::string out;
  auto field = [&](char tag, const std::string& v) {
    if (v.empty()) return;
    out.push_back(tag);
    for (size_t n = v.size(); ; n >>= 7) {  // varint length
      if (n < 0x80) {
        out.push_back(static_cast<char>(n));
        break;
      }
      out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    }
    out += v;
  };
  field(0x0a, runtime);
  field(0x12, root);
  return out;
}

// Creates container `id` on the daemon at `socket` from a template made by `ctr containers
// create --rootfs` (so the spec is ctr's), with runtime v1 and RuncOptions; then Tasks.Create
// without stdio. Returns the Tasks.Create status.
grpc::Status CreateV1Task(const std::string& socket, const std::string& ns,
                          const std::string& rootfs, const std::string& id,
                          const std::string& options) {
  RunResult r = CtrAt(socket, {"containers", "create", "--rootfs", rootfs, id + "-tmpl", "/bin/true"}, ns);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto ch = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto containers = cv1::Containers::NewStub(ch);
  auto tasks = tv1::Tasks::NewStub(ch);
  cv1::GetContainerResponse got;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", ns);
    cv1::GetContainerRequest req;
    req.set_id(id + "-tmpl");
    grpc::Status s = containers->Get(&ctx, req, &got);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  CtrAt(socket, {"containers", "rm", id + "-tmpl"}, ns);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", ns);
    cv1::CreateContainerRequest req;
    *req.mutable_container() = got.container();
    req.mutable_container()->set_id(id);
    req.mutable_container()->clear_created_at();
    req.mutable_container()->clear_updated_at();
    auto* rt = req.mutable_container()->mutable_runtime();
    rt->set_name("io.containerd.runtime.v1.linux");
    rt->mutable_options()->set_type_url("containerd.linux.runc.RuncOptions");
    rt->mutable_options()->set_value(options);
    cv1::CreateContainerResponse resp;
    grpc::Status s = containers->Create(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", ns);
  tv1::CreateTaskRequest req;
  req.set_container_id(id);
  tv1::CreateTaskResponse resp;
  return tasks->Create(&ctx, req, &resp);
}

// #12: runtime v1 runs containers through our shim with the container's RuncOptions.
TEST_F(RuntimeIssue12Test, Issue12RuntimeV1Runs) {
  RunResult r = Ctr({"run", "--rm", "--runtime", "io.containerd.runtime.v1.linux", "--fifo-dir",
                     tmp_ + "/fifo", "--rootfs", rootfs_, "v1-default", "/bin/echo", "v1 says hi"},
                    ns_);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "v1 says hi\n");

  // RuncOptions.runtime / runtime_root: the runtime binary and its state root.
  std::string v1_root = tmp_ + "/v1-root";
  grpc::Status s =
      CreateV1Task(socket_, ns_, rootfs_, "v1-opts", RuncOptionsV1("runc", v1_root));
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(fs::exists(v1_root + "/" + ns_ + "/v1-opts")) << "runtime_root not used";
  r = Ctr({"tasks", "delete", "-f", "v1-opts"}, ns_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  Ctr({"containers", "rm", "v1-opts"}, ns_);
}

// #12: a missing runtime binary fails Tasks.Create as on containerd 1.6, naming the binary; the
// real containerd runs in a private mount namespace with its own /run (its v1 shim's socket is
// hard-wired under /run/containerd/s).
TEST_F(RuntimeIssue12Test, Issue12RuntimeV1MissingBinaryLikeContainerd) {
  if (!ContainerdDaemon::Available() || ::access("/usr/bin/containerd-shim", X_OK) != 0) {
    GTEST_SKIP() << "needs containerd and its v1 containerd-shim";
  }
  std::string wrapper = tmp_ + "/containerd-private-run";
  ASSERT_TRUE(WriteFileBytes(
      wrapper,
      "#!/bin/sh\nexec unshare --mount --propagation private -- /bin/sh -c "
      "'mount -t tmpfs -o mode=0755 it-run /run && exec /usr/bin/containerd \"$@\"' sh \"$@\"\n"));
  ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
  ContainerdDaemon::Options opts;
  opts.binary = wrapper;
  ContainerdDaemon containerd;
  ASSERT_TRUE(containerd.Start(tmp_ + "/containerd", opts));

  const std::string options = RuncOptionsV1("berth-no-such-runc", "");
  grpc::Status ours = CreateV1Task(socket_, ns_, rootfs_, "v1-missing", options);
  grpc::Status theirs = CreateV1Task(containerd.socket(), ns_, rootfs_, "v1-missing", options);
  EXPECT_FALSE(theirs.ok());
  EXPECT_FALSE(ours.ok());
  EXPECT_EQ(ours.error_code(), theirs.error_code());
  // The messages name the bundle's log file under each daemon's own state dir.
  auto normal = [](std::string m, const std::string& bundle) {
    for (size_t p; (p = m.find(bundle)) != std::string::npos;) m.replace(p, bundle.size(), "<bundle>");
    return m;
  };
  std::string our_msg = normal(ours.error_message(),
                               state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/v1-missing");
  std::string their_msg =
      normal(theirs.error_message(),
             containerd.state() + "/io.containerd.runtime.v1.linux/" + ns_ + "/v1-missing");
  EXPECT_EQ(our_msg, their_msg);
  EXPECT_NE(our_msg.find("berth-no-such-runc"), std::string::npos) << our_msg;
  for (const std::string& sock : {socket_, containerd.socket()}) {
    CtrAt(sock, {"tasks", "delete", "-f", "v1-missing"}, ns_);
    CtrAt(sock, {"containers", "rm", "v1-missing"}, ns_);
  }
  containerd.Stop();
}

}  // namespace
}  // namespace berth::testing
