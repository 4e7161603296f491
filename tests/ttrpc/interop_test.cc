// Interop with the real Go ttrpc (1.1.1, inside Debian's containerd 1.6.20), both directions:
// * our Client → containerd's `<grpc socket>.ttrpc` endpoint: Events.Forward of a TaskExit, seen
//   by a real `ctr events` subscriber; Go's error statuses decoded; Go's handling of an
//   oversized frame and an even stream id compared with ours;
// * containerd's Go client → our Server: containerd, started with a task bundle whose `address`
//   names our socket, reconnects to it as to a shim (Task.Connect with namespace metadata and
//   the load timeout as deadline), and `ctr tasks ls` reaches our Task.State.
// Needs root and /usr/bin/containerd + /usr/bin/ctr; skips cleanly otherwise. Each test runs its
// own containerd on a temp root/state/socket and stops it (SIGTERM) before cleaning up.
#include <google/protobuf/any.pb.h>
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "github.com/containerd/containerd/api/types/task/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "test_util.h"
#include "ttrpc/client.h"
#include "ttrpc/server.h"

namespace berth::ttrpc {
namespace {

using testing::RawConn;
using testing::WaitFor;
using namespace std::chrono_literals;

constexpr char kContainerd[] = "/usr/bin/containerd";
constexpr char kCtr[] = "/usr/bin/ctr";
constexpr std::string_view kEventsService = "containerd.services.events.ttrpc.v1.Events";
constexpr std::string_view kTaskService = "containerd.task.v2.Task";

class ContainerdInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to run containerd";
    if (::access(kContainerd, X_OK) != 0 || ::access(kCtr, X_OK) != 0) {
      GTEST_SKIP() << "containerd or ctr not installed";
    }
    sock_ = dir_.Join("c.sock");
    ttrpc_sock_ = sock_ + ".ttrpc";
    root_ = dir_.Join("root");
    state_ = dir_.Join("state");
    // A unique namespace: nothing we do can meet another containerd's objects.
    ns_ = "berth-ttrpc-" + std::to_string(::getpid());
  }

  void TearDown() override {
    if (containerd_.running()) {
      containerd_.Stop();
      if (HasFailure()) {
        std::cerr << "---- containerd log ----\n"
                  << testing::ReadFileOrEmpty(dir_.Join("containerd.log")) << "\n";
      }
    }
  }

  // Starts containerd and waits until its gRPC and ttrpc sockets answer.
  bool StartContainerd() {
    std::ofstream cfg(dir_.Join("config.toml"));
    cfg << "version = 2\n"
        << "root = \"" << root_ << "\"\n"
        << "state = \"" << state_
        << "\"\n"
        // CRI is not needed; opt would create /opt/containerd on the host; the remaining
        // snapshotters only log noise on a machine without their filesystems.
        << "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\","
        << " \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\","
        << " \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n"
        << "[grpc]\n  address = \"" << sock_ << "\"\n"
        << "[ttrpc]\n  address = \"" << ttrpc_sock_ << "\"\n"
        << "[debug]\n  level = \"debug\"\n";
    cfg.close();
    if (!containerd_.Start({kContainerd, "--config", dir_.Join("config.toml")},
                           dir_.Join("containerd.log"))) {
      return false;
    }
    bool up = WaitFor(
        [&] {
          if (::access(ttrpc_sock_.c_str(), F_OK) != 0) return false;
          return Ctr({"version"}) == 0;
        },
        30s);
    if (!up) ADD_FAILURE() << "containerd did not come up";
    return up;
  }

  int Ctr(std::vector<std::string> args, std::string* out = nullptr) {
    std::vector<std::string> argv = {kCtr, "--address", sock_, "--namespace", ns_};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string err;
    int code = testing::RunCommand(argv, out, &err, 30s);
    if (code != 0 && out != nullptr) *out += err;
    return code;
  }

  testing::TempDir dir_;
  std::string sock_, ttrpc_sock_, root_, state_, ns_;
  testing::Child containerd_;
};

containerd::services::events::ttrpc::v1::ForwardRequest TaskExitEvent(const std::string& ns,
                                                                      const std::string& id,
                                                                      uint32_t status) {
  containerd::events::TaskExit exit;
  exit.set_container_id(id);
  exit.set_id(id);
  exit.set_pid(4242);
  exit.set_exit_status(status);
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now);
  exit.mutable_exited_at()->set_seconds(secs.count());
  containerd::services::events::ttrpc::v1::ForwardRequest req;
  auto* env = req.mutable_envelope();
  env->mutable_timestamp()->set_seconds(secs.count());
  env->mutable_timestamp()->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - secs).count()));
  env->set_namespace_(ns);
  env->set_topic("/tasks/exit");
  // typeurl names containerd's event types without the type.googleapis.com/ prefix.
  env->mutable_event()->set_type_url("containerd.events.TaskExit");
  env->mutable_event()->set_value(exit.SerializeAsString());
  return req;
}

TEST_F(ContainerdInteropTest, ForwardEventToRealContainerdTtrpcEndpoint) {
  ASSERT_TRUE(StartContainerd());
  testing::Child events;
  std::string events_log = dir_.Join("events.out");
  ASSERT_TRUE(events.Start({kCtr, "--address", sock_, "events"}, events_log));

  auto client = Client::Connect(ttrpc_sock_);
  ASSERT_TRUE(client.has_value()) << client.error().ToString();
  CallOptions opts;
  opts.timeout = 5s;
  opts.metadata.Add("containerd-namespace-ttrpc", ns_);
  google::protobuf::Empty empty;

  // `ctr events` subscribes asynchronously: forward until it shows up (each forward must work).
  const std::string id = "berth-interop-exit";
  bool seen = WaitFor(
      [&] {
        Status st =
            (*client)->Call(kEventsService, "Forward", TaskExitEvent(ns_, id, 7), &empty, opts);
        EXPECT_TRUE(st.ok()) << st.ToString();
        std::this_thread::sleep_for(200ms);
        return testing::ReadFileOrEmpty(events_log).find(id) != std::string::npos;
      },
      20s);
  events.Stop();
  std::string out = testing::ReadFileOrEmpty(events_log);
  ASSERT_TRUE(seen) << "ctr events printed:\n" << out;
  // "<timestamp> <namespace> <topic> <event as JSON>"
  std::string line = out.substr(0, out.find('\n', out.find(id)));
  line = line.substr(line.rfind('\n') == std::string::npos ? 0 : line.rfind('\n') + 1);
  EXPECT_NE(line.find(" " + ns_ + " /tasks/exit "), std::string::npos) << line;
  EXPECT_NE(line.find("\"container_id\":\"" + id + "\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"exit_status\":7"), std::string::npos) << line;
  EXPECT_NE(line.find("\"pid\":4242"), std::string::npos) << line;
}

TEST_F(ContainerdInteropTest, GoServerErrorsDecodeAsGrpcStatuses) {
  ASSERT_TRUE(StartContainerd());
  auto client = Client::Connect("unix://" + ttrpc_sock_);
  ASSERT_TRUE(client.has_value()) << client.error().ToString();
  auto& c = **client;
  google::protobuf::Empty empty;

  auto r = c.Call(kEventsService, "Nope", "", {.timeout = 5s});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kUnimplemented, "method Nope"));
  r = c.Call("berth.No.Such", "Forward", "", {.timeout = 5s});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status(Code::kUnimplemented, "service berth.No.Such"));
  // An envelope without a namespace: containerd's errdefs → InvalidArgument.
  auto bad = TaskExitEvent("", "x", 1);
  Status st = c.Call(kEventsService, "Forward", bad, &empty, {.timeout = 5s});
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  // The connection is still good after errors.
  st = c.Call(kEventsService, "Forward", TaskExitEvent(ns_, "y", 0), &empty, {.timeout = 5s});
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_F(ContainerdInteropTest, GoServerOversizeAndEvenStreamMatchOurs) {
  ASSERT_TRUE(StartContainerd());
  RawConn raw(ttrpc_sock_);
  ASSERT_TRUE(raw.valid());
  char h[kHeaderSize];
  EncodeHeader({kMaxMessageSize + 1, 1, 1, 0}, h);
  ASSERT_TRUE(raw.Write(std::string_view(h, kHeaderSize)));
  ASSERT_TRUE(raw.Write(std::string(kMaxMessageSize + 1, 'x')));
  auto resp = raw.ReadResponse(1, 10s);
  ASSERT_TRUE(resp && resp->status);
  // Exactly what our server answers (server_test OversizedRequestFrame...).
  EXPECT_EQ(StatusFromRpc(*resp->status), OversizedMessage(kMaxMessageSize + 1));

  Request req;
  req.service = std::string(kEventsService);
  req.method = "Forward";
  req.payload = TaskExitEvent(ns_, "z", 0).SerializeAsString();
  ASSERT_TRUE(raw.SendRequest(2, req));
  resp = raw.ReadResponse(2);
  ASSERT_TRUE(resp && resp->status);
  EXPECT_EQ(StatusFromRpc(*resp->status),
            Status(Code::kInvalidArgument, "StreamID must be odd for client initiated streams"));

  // Same connection, valid request: OK with no status at all, as we encode it.
  ASSERT_TRUE(raw.SendRequest(3, req));
  auto f = raw.ReadFrame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->header.stream_id, 3u);
  EXPECT_EQ(f->payload, EncodeResponse(Status::Ok(), ""));
}

TEST_F(ContainerdInteropTest, ContainerdReconnectsToOurServerAsAShim) {
  namespace task = containerd::task::v2;
  const std::string id = "berth-ttrpc-shim";
  std::string shim_sock = dir_.Join("shim.sock");

  auto lt = LoopThread::Start();
  ASSERT_TRUE(lt.has_value());
  Server server((*lt)->loop());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Context> connects, states;
  ASSERT_TRUE((server.RegisterTyped<task::ConnectRequest, task::ConnectResponse>(
                   kTaskService, "Connect",
                   [&](const Context& ctx,
                       const task::ConnectRequest& req) -> Result<task::ConnectResponse> {
                     EXPECT_EQ(req.id(), id);
                     std::lock_guard lock(mu);
                     connects.push_back(ctx);
                     cv.notify_all();
                     task::ConnectResponse resp;
                     resp.set_shim_pid(static_cast<uint32_t>(::getpid()));
                     resp.set_task_pid(4242);
                     resp.set_version("berth-ttrpc-test");
                     return resp;
                   }))
                  .ok());
  ASSERT_TRUE(
      (server.RegisterTyped<task::StateRequest, task::StateResponse>(
           kTaskService, "State",
           [&](const Context& ctx, const task::StateRequest& req) -> Result<task::StateResponse> {
             std::lock_guard lock(mu);
             states.push_back(ctx);
             task::StateResponse resp;
             resp.set_id(req.id());
             resp.set_pid(4242);
             resp.set_status(containerd::v1::types::RUNNING);
             return resp;
           }))
          .ok());
  ASSERT_TRUE(server.Listen(shim_sock).ok());

  // What a running shim leaves in containerd's state dir (runtime/v2 bundle).
  std::string bundle = state_ + "/io.containerd.runtime.v2.task/" + ns_ + "/" + id;
  std::filesystem::create_directories(bundle);
  std::filesystem::create_directories(root_ + "/io.containerd.runtime.v2.task/" + ns_ + "/" + id);
  std::ofstream(bundle + "/address") << "unix://" << shim_sock;
  std::ofstream(bundle + "/shim-binary-path") << "/usr/bin/containerd-shim-runc-v2";

  ASSERT_TRUE(StartContainerd());
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return !connects.empty(); }));
    const Context& ctx = connects.front();
    EXPECT_EQ(ctx.service, kTaskService);
    EXPECT_EQ(ctx.method, "Connect");
    // containerd's namespaces.WithNamespace sets the ttrpc header too.
    EXPECT_EQ(ctx.metadata.Get("containerd-namespace-ttrpc"), ns_);
    // io.containerd.timeout.shim.load (5 s) travels as timeout_nano.
    ASSERT_TRUE(ctx.deadline.has_value());
    EXPECT_LE(*ctx.deadline - Clock::now(), 5s);
    EXPECT_EQ(ctx.stream_id % 2, 1u);
  }
  std::string out;
  EXPECT_EQ(Ctr({"tasks", "ls"}, &out), 0) << out;
  EXPECT_NE(out.find(id), std::string::npos) << out;
  EXPECT_NE(out.find("4242"), std::string::npos) << out;
  EXPECT_NE(out.find("RUNNING"), std::string::npos) << out;
  {
    std::lock_guard lock(mu);
    ASSERT_FALSE(states.empty());
    // Calls made on behalf of a gRPC request (Tasks.List here) carry no ttrpc metadata at all:
    // a shim must not require the namespace header. io.containerd.timeout.task.state = 2 s.
    EXPECT_TRUE(states.back().metadata.empty());
    ASSERT_TRUE(states.back().deadline.has_value());
    EXPECT_LE(*states.back().deadline - Clock::now(), 2s);
  }
  // Stop containerd while our "shim" is still up: were the connection to drop first, it
  // would run the real runc shim's `delete` for this bundle.
  containerd_.Stop();
  EXPECT_TRUE(WaitFor([&] { return server.ConnectionCountForTest() == 0; }));
}

}  // namespace
}  // namespace berth::ttrpc
