// Events.Subscribe at scale: thousands of streams on one channel cost berthd a bounded number
// of threads (the synchronous handler held one thread per subscriber: 1,000 subscribers were
// 1,014 threads), every stream still gets every event its filter matches, a client cancel
// ends only that stream, and a stop ends the rest with UNAVAILABLE (never CANCELLED, which
// dockerd takes as "stop listening for good").
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/events/namespace.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "harness.h"

namespace berth::testing {
namespace {

namespace ev1 = containerd::services::events::v1;
using Clock = std::chrono::steady_clock;

// A field of /proc/<pid>/status ("Threads", "VmRSS" in KiB), -1 if absent.
long ProcStatus(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":")) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// Polls `pred` every 20 ms for at most `limit`.
bool WaitFor(const std::function<bool()>& pred, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// One Subscribe stream read with the client callback API (no thread of ours per stream).
class Subscriber final : public grpc::ClientReadReactor<ev1::Envelope> {
 public:
  Subscriber(ev1::Events::Stub& stub, std::vector<std::string> filters) {
    for (auto& f : filters) req_.add_filters(f);
    stub.async()->Subscribe(&ctx_, &req_, this);
    StartRead(&env_);
    StartCall();
  }
  // gRPC must be done with the reactor before it goes (a failed ASSERT leaves streams open).
  ~Subscriber() override {
    ctx_.TryCancel();
    std::unique_lock lock(mu_);
    done_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return done_; });
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      std::lock_guard lock(mu_);
      topics_.push_back(env_.topic());
      got_.fetch_add(1);
      if (paused_) {
        idle_ = true;
        return;
      }
    }
    StartRead(&env_);
  }
  // Stops reading after the read in progress (a stalled client); Resume reads on.
  void Pause() {
    std::lock_guard lock(mu_);
    paused_ = true;
  }
  void Resume() {
    {
      std::lock_guard lock(mu_);
      paused_ = false;
      if (!idle_) return;
      idle_ = false;
    }
    StartRead(&env_);
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard lock(mu_);
    status_ = s;
    done_ = true;
    done_cv_.notify_all();
  }

  void Cancel() { ctx_.TryCancel(); }
  int got() const { return got_.load(); }
  size_t Count(const std::string& topic) const {
    std::lock_guard lock(mu_);
    return std::count(topics_.begin(), topics_.end(), topic);
  }
  bool done() const {
    std::lock_guard lock(mu_);
    return done_;
  }
  grpc::Status status() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  grpc::ClientContext ctx_;
  ev1::SubscribeRequest req_;
  ev1::Envelope env_;
  std::atomic<int> got_{0};
  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  std::vector<std::string> topics_;  // GUARDED_BY(mu_)
  grpc::Status status_;              // GUARDED_BY(mu_)
  bool done_ = false;                // GUARDED_BY(mu_)
  bool paused_ = false;              // GUARDED_BY(mu_)
  bool idle_ = false;                // GUARDED_BY(mu_): paused with no read outstanding
};

class EventsScaleTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    channel_ = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
    stub_ = ev1::Events::NewStub(channel_);
  }

  grpc::Status Publish(const std::string& topic, const std::string& name) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("containerd-namespace", "scale");
    ev1::PublishRequest req;
    req.set_topic(topic);
    containerd::events::NamespaceUpdate payload;
    payload.set_name(name);
    req.mutable_event()->set_type_url("containerd.events.NamespaceUpdate");
    req.mutable_event()->set_value(payload.SerializeAsString());
    google::protobuf::Empty empty;
    return stub_->Publish(&ctx, req, &empty);
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ev1::Events::Stub> stub_;
};

TEST_F(EventsScaleTest, ThousandsOfSubscribersOnBoundedThreads) {
  constexpr int kMatching = 2000, kFiltered = 200, kEvents = 5;
  ASSERT_TRUE(Publish("/scale/warmup", "w").ok());  // channel and callback machinery up
  long threads_idle = ProcStatus(daemon_pid_, "Threads");
  long rss_idle = ProcStatus(daemon_pid_, "VmRSS");

  std::vector<std::unique_ptr<Subscriber>> subs;
  for (int i = 0; i < kMatching; ++i) {
    subs.push_back(std::make_unique<Subscriber>(
        *stub_, std::vector<std::string>{"namespace==scale,topic~=\"^/scale/\""}));
  }
  // event.<field> filters are evaluated per subscriber: these match only name "nobody".
  std::vector<std::unique_ptr<Subscriber>> filtered;
  for (int i = 0; i < kFiltered; ++i) {
    filtered.push_back(std::make_unique<Subscriber>(
        *stub_, std::vector<std::string>{"event.name==nobody"}));
  }
  // Streams register asynchronously: ping until every one has seen a ping.
  ASSERT_TRUE(WaitFor(
      [&] {
        if (!Publish("/scale/ping", "p").ok()) return false;
        for (auto& s : subs) {
          if (s->Count("/scale/ping") == 0) return false;
        }
        return true;
      },
      std::chrono::seconds(120)))
      << "not every subscriber got a ping";

  long threads_busy = ProcStatus(daemon_pid_, "Threads");
  long rss_busy = ProcStatus(daemon_pid_, "VmRSS");
  std::cerr << "berthd threads: " << threads_idle << " idle, " << threads_busy << " with "
            << kMatching + kFiltered << " subscribers; VmRSS " << rss_idle << " -> " << rss_busy
            << " KiB\n";
  EXPECT_LT(threads_busy, 64);

  for (int i = 0; i < kEvents; ++i) ASSERT_TRUE(Publish("/scale/event", "e").ok());
  ASSERT_TRUE(Publish("/scale/event", "nobody").ok());  // the only one `filtered` matches
  EXPECT_TRUE(WaitFor(
      [&] {
        for (auto& s : subs) {
          if (s->Count("/scale/event") < kEvents + 1) return false;
        }
        for (auto& s : filtered) {
          if (s->got() < 1) return false;
        }
        return true;
      },
      std::chrono::seconds(60)));
  for (auto& s : subs) EXPECT_EQ(s->Count("/scale/event"), kEvents + 1u);
  for (auto& s : filtered) {
    EXPECT_EQ(s->got(), 1);
    EXPECT_EQ(s->Count("/scale/event"), 1u);
  }

  // A client cancel ends that stream only; the others keep receiving.
  for (int i = 0; i < kMatching; i += 2) subs[i]->Cancel();
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < kMatching; i += 2) {
          if (!subs[i]->done()) return false;
        }
        return true;
      },
      std::chrono::seconds(30)));
  ASSERT_TRUE(Publish("/scale/after-cancel", "a").ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        for (int i = 1; i < kMatching; i += 2) {
          if (subs[i]->Count("/scale/after-cancel") == 0) return false;
        }
        return true;
      },
      std::chrono::seconds(60)));
  for (int i = 0; i < kMatching; i += 2) {
    EXPECT_EQ(subs[i]->Count("/scale/after-cancel"), 0u);
    EXPECT_EQ(subs[i]->status().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_LT(ProcStatus(daemon_pid_, "Threads"), 64);

  // The daemon's stop (SIGTERM) ends every remaining stream, never with CANCELLED.
  EXPECT_EQ(StopDaemon(), 0);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (auto& s : subs) {
          if (!s->done()) return false;
        }
        for (auto& s : filtered) {
          if (!s->done()) return false;
        }
        return true;
      },
      std::chrono::seconds(30)));
  for (int i = 1; i < kMatching; i += 2) {
    EXPECT_EQ(subs[i]->status().error_code(), grpc::StatusCode::UNAVAILABLE)
        << subs[i]->status().error_message();
  }
}

// A subscriber that stops reading is dropped once it falls Subscription::kMaxQueued (8192)
// events behind: the daemon frees its queue, and when the client reads again it gets what was
// already in flight, then RESOURCE_EXHAUSTED. A reading subscriber beside it misses nothing.
TEST_F(EventsScaleTest, StalledSubscriberIsDropped) {
  constexpr size_t kFlood = 8192 + 1000;
  // The stalled stream gets its own channel without BDP probing, so its flow-control window
  // stays at 64 KiB and the daemon's writes to it really stop (BDP, driven by the busy reader,
  // could grow every stream's window to megabytes).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_channel = grpc::CreateCustomChannel("unix:" + socket_,
                                                grpc::InsecureChannelCredentials(), args);
  auto slow_stub = ev1::Events::NewStub(slow_channel);
  Subscriber reader(*stub_, {"topic~=\"^/flood/\""});
  Subscriber stalled(*slow_stub, {"topic~=\"^/flood/\""});
  stalled.Pause();
  ASSERT_TRUE(WaitFor(
      [&] { return Publish("/flood/ping", "p").ok() && reader.got() > 0 && stalled.got() > 0; },
      std::chrono::seconds(30)));
  for (size_t i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(Publish("/flood/e", std::string(200, 'x')).ok());
  }
  EXPECT_TRUE(WaitFor([&] { return reader.Count("/flood/e") == kFlood; },
                      std::chrono::seconds(60)));
  EXPECT_FALSE(reader.done());
  EXPECT_FALSE(stalled.done());
  stalled.Resume();
  EXPECT_TRUE(WaitFor([&] { return stalled.done(); }, std::chrono::seconds(30)));
  EXPECT_EQ(stalled.status().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << stalled.status().error_message();
  EXPECT_LT(stalled.Count("/flood/e"), 8192u);  // what was in flight, not the dropped queue
  std::cerr << "stalled subscriber read " << stalled.Count("/flood/e") << " of " << kFlood
            << " events before RESOURCE_EXHAUSTED\n";
  // The reader is unaffected.
  ASSERT_TRUE(Publish("/flood/end", "e").ok());
  EXPECT_TRUE(WaitFor([&] { return reader.Count("/flood/end") == 1; }, std::chrono::seconds(30)));
  reader.Cancel();
  EXPECT_TRUE(WaitFor([&] { return reader.done(); }, std::chrono::seconds(10)));
}

}  // namespace
}  // namespace berth::testing
