// bench_subscribers: holds N Events.Subscribe streams open on one gRPC channel against any
// containerd-API daemon (berthd or containerd), for bench/memory.sh to measure what they cost
// the daemon. Not a test.
//
//   bench_subscribers SOCKET N
//
// Opens N streams (filter: topic=="/bench/ping"), publishes /bench/ping in namespace "bench"
// until every stream has received one, prints "ready N <ms>" and then waits until stdin
// closes (or a line is read); then cancels every stream, waits for them to end, prints
// "done" and exits 0. Exits 1 if not all streams got a ping within 300 s.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"

namespace ev1 = containerd::services::events::v1;

namespace {

std::atomic<int> g_pinged{0};

class Stream final : public grpc::ClientReadReactor<ev1::Envelope> {
 public:
  explicit Stream(ev1::Events::Stub& stub) {
    req_.add_filters("topic==\"/bench/ping\"");
    stub.async()->Subscribe(&ctx_, &req_, this);
    StartRead(&env_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!pinged_) {
      pinged_ = true;
      g_pinged.fetch_add(1);
    }
    StartRead(&env_);
  }
  void OnDone(const grpc::Status&) override {
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  void Cancel() { ctx_.TryCancel(); }
  void WaitDone() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return done_; });
  }

 private:
  grpc::ClientContext ctx_;
  ev1::SubscribeRequest req_;
  ev1::Envelope env_;
  bool pinged_ = false;  // only touched by OnReadDone (one read at a time)
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

bool Publish(ev1::Events::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("containerd-namespace", "bench");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  ev1::PublishRequest req;
  req.set_topic("/bench/ping");
  // Any type; containerd checks only that it is set.
  req.mutable_event()->set_type_url("containerd.events.NamespaceUpdate");
  google::protobuf::Empty empty;
  return stub.Publish(&ctx, req, &empty).ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOCKET N\n", argv[0]);
    return 2;
  }
  const std::string socket = argv[1];
  const int n = std::stoi(argv[2]);
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = ev1::Events::NewStub(channel);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Stream>> streams;
  streams.reserve(n);
  for (int i = 0; i < n; ++i) streams.push_back(std::make_unique<Stream>(*stub));
  auto deadline = t0 + std::chrono::seconds(300);
  while (g_pinged.load() < n && std::chrono::steady_clock::now() < deadline) {
    if (!Publish(*stub)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  int ok = g_pinged.load();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  if (ok < n) {
    std::printf("failed %d of %d streams got a ping\n", ok, n);
  } else {
    std::printf("ready %d %lld\n", n, static_cast<long long>(ms));
  }
  std::fflush(stdout);
  if (ok == n) {
    std::string line;
    std::getline(std::cin, line);
  }
  for (auto& s : streams) s->Cancel();
  for (auto& s : streams) s->WaitDone();
  std::printf("done\n");
  return ok == n ? 0 : 1;
}
