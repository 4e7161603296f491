// Publisher against a ttrpc server standing in for the daemon's events socket.
#include "shim/publisher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/event_loop.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "ttrpc/server.h"

namespace berth::shim {
namespace {

using containerd::services::events::ttrpc::v1::ForwardRequest;
using namespace std::chrono_literals;

// A fake daemon: records every Forward and the namespace metadata it came with.
class FakeDaemon {
 public:
  explicit FakeDaemon(EventLoop& loop) : server_(loop) {
    Status st = server_.Register(
        "containerd.services.events.ttrpc.v1.Events", "Forward",
        [this](const ttrpc::Context& ctx, std::string_view payload) -> Result<std::string> {
          ForwardRequest req;
          if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
            return std::unexpected(InvalidArgument("bad ForwardRequest"));
          }
          std::lock_guard lock(mu_);
          got_.push_back(req);
          namespaces_.push_back(ctx.metadata.Get("containerd-namespace-ttrpc").value_or(""));
          cv_.notify_all();
          return std::string();
        });
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  Status Listen(const std::string& path) { return server_.Listen(path); }
  bool WaitFor(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
  }
  std::vector<ForwardRequest> got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  std::vector<std::string> namespaces() {
    std::lock_guard lock(mu_);
    return namespaces_;
  }
  void Close() { server_.Close(); }

 private:
  ttrpc::Server server_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ForwardRequest> got_;
  std::vector<std::string> namespaces_;
};

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-shim-pub-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/events.sock";
    auto lt = LoopThread::Start();
    ASSERT_TRUE(lt.has_value());
    loop_ = std::move(*lt);
  }
  void TearDown() override {
    daemon_.reset();
    loop_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void StartDaemon() {
    RunOnLoop(loop_->loop(), [&] {
      daemon_ = std::make_unique<FakeDaemon>(loop_->loop());
      Status st = daemon_->Listen(sock_);
      ASSERT_TRUE(st.ok()) << st.ToString();
    });
  }
  void StopDaemon() {
    RunOnLoop(loop_->loop(), [&] { daemon_.reset(); });
  }
  static containerd::events::TaskExit Exit(const std::string& id, uint32_t status) {
    containerd::events::TaskExit e;
    e.set_container_id(id);
    e.set_id(id);
    e.set_pid(42);
    e.set_exit_status(status);
    return e;
  }

  std::string dir_, sock_;
  std::unique_ptr<LoopThread> loop_;
  std::unique_ptr<FakeDaemon> daemon_;
};

TEST_F(PublisherTest, ForwardsEnvelopeInOrder) {
  StartDaemon();
  {
    Publisher pub(loop_->loop(), sock_, "ns1");
    auto before = std::chrono::system_clock::now();
    for (uint32_t i = 0; i < 20; ++i) pub.Publish("/tasks/exit", Exit("c" + std::to_string(i), i));
    containerd::events::TaskOOM oom;
    oom.set_container_id("c0");
    pub.Publish("/tasks/oom", oom);
    ASSERT_TRUE(pub.Flush(5s));
    EXPECT_TRUE(pub.Idle());
    ASSERT_TRUE(daemon_->WaitFor(21, 5s));
    auto got = daemon_->got();
    ASSERT_EQ(got.size(), 21u);
    for (uint32_t i = 0; i < 20; ++i) {
      const auto& env = got[i].envelope();
      EXPECT_EQ(env.topic(), "/tasks/exit");
      EXPECT_EQ(env.namespace_(), "ns1");
      // containerd's typeurl registers event types under their full message name.
      EXPECT_EQ(env.event().type_url(), "containerd.events.TaskExit");
      containerd::events::TaskExit e;
      ASSERT_TRUE(e.ParseFromString(env.event().value()));
      EXPECT_EQ(e.container_id(), "c" + std::to_string(i));
      EXPECT_EQ(e.exit_status(), i);
      auto ts = std::chrono::system_clock::time_point(
          std::chrono::seconds(env.timestamp().seconds()) +
          std::chrono::nanoseconds(env.timestamp().nanos()));
      EXPECT_GE(ts + 1s, before);
    }
    EXPECT_EQ(got[20].envelope().topic(), "/tasks/oom");
    EXPECT_EQ(got[20].envelope().event().type_url(), "containerd.events.TaskOOM");
    for (const auto& ns : daemon_->namespaces()) EXPECT_EQ(ns, "ns1");
  }
}

TEST_F(PublisherTest, WaitsForTheDaemonAndRedials) {
  Publisher pub(loop_->loop(), sock_, "ns1");
  pub.Publish("/tasks/exit", Exit("early", 1));  // nobody listens yet
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(pub.Idle());
  StartDaemon();
  ASSERT_TRUE(pub.Flush(5s));  // redialled within about a second
  ASSERT_TRUE(daemon_->WaitFor(1, 5s));
  EXPECT_EQ(daemon_->got()[0].envelope().topic(), "/tasks/exit");

  // The daemon restarts: the next event goes to the new one.
  StopDaemon();
  pub.Publish("/tasks/exit", Exit("late", 2));
  std::this_thread::sleep_for(200ms);
  StartDaemon();
  ASSERT_TRUE(pub.Flush(8s));
  ASSERT_TRUE(daemon_->WaitFor(1, 5s));
  containerd::events::TaskExit e;
  ASSERT_TRUE(e.ParseFromString(daemon_->got().back().envelope().event().value()));
  EXPECT_EQ(e.container_id(), "late");
}

TEST_F(PublisherTest, NoAddressDropsEvents) {
  Publisher pub(loop_->loop(), "", "ns1");
  pub.Publish("/tasks/exit", Exit("x", 0));
  EXPECT_TRUE(pub.Idle());
}

}  // namespace
}  // namespace berth::shim
