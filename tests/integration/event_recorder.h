// Records berthd's events for a test: one gRPC Events.Subscribe (with containerd filters) read
// on a background thread until Stop or destruction.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"

namespace berth::testing {

class EventRecorder {
 public:
  using Envelope = containerd::services::events::v1::Envelope;

  EventRecorder(const std::string& socket, const std::vector<std::string>& filters)
      : stub_(containerd::services::events::v1::Events::NewStub(
            grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()))) {
    containerd::services::events::v1::SubscribeRequest req;
    for (const auto& f : filters) req.add_filters(f);
    reader_ = stub_->Subscribe(&ctx_, req);
    thread_ = std::thread([this] {
      Envelope env;
      while (reader_->Read(&env)) {
        std::lock_guard lock(mu_);
        got_.push_back(env);
      }
    });
  }
  ~EventRecorder() { Stop(); }

  // Ends the subscription; what was recorded stays readable.
  void Stop() {
    if (!thread_.joinable()) return;
    ctx_.TryCancel();
    thread_.join();
  }

  std::vector<Envelope> Events() const {
    std::lock_guard lock(mu_);
    return got_;
  }
  size_t Count() const {
    std::lock_guard lock(mu_);
    return got_.size();
  }

 private:
  std::unique_ptr<containerd::services::events::v1::Events::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<Envelope>> reader_;
  mutable std::mutex mu_;
  std::vector<Envelope> got_;
  std::thread thread_;
};

}  // namespace berth::testing
