#include "shim/publisher.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <spdlog/spdlog.h>

#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"

namespace berth::shim {

namespace {
constexpr size_t kMaxQueue = 2048;
constexpr int kMaxAttempts = 5;
constexpr char kService[] = "containerd.services.events.ttrpc.v1.Events";
}  // namespace

Publisher::Publisher(ttrpc::EventLoop& loop, std::string address, std::string ns)
    : loop_(loop), address_(std::move(address)), ns_(std::move(ns)) {}

Publisher::~Publisher() {
  ttrpc::RunOnLoop(loop_, [this] {
    *alive_ = false;
    client_.reset();
  });
}

void Publisher::Publish(const std::string& topic, const google::protobuf::MessageLite& event) {
  if (address_.empty()) return;
  containerd::services::events::ttrpc::v1::ForwardRequest req;
  auto* env = req.mutable_envelope();
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  env->mutable_timestamp()->set_seconds(ns / 1000000000);
  env->mutable_timestamp()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  env->set_namespace_(ns_);
  env->set_topic(topic);
  env->mutable_event()->set_type_url(event.GetTypeName());
  event.SerializeToString(env->mutable_event()->mutable_value());
  std::string payload;
  req.SerializeToString(&payload);
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueue) {
      spdlog::warn("event queue full: dropping the oldest event");
      queue_.pop_front();
    }
    queue_.push_back(std::move(payload));
  }
  auto alive = alive_;
  loop_.Post([this, alive] {
    if (*alive) Pump();
  });
}

bool Publisher::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return queue_.empty(); });
}

bool Publisher::Idle() {
  std::lock_guard lock(mu_);
  return queue_.empty();
}

void Publisher::WhenIdle(std::function<void()> fn) {
  if (Idle()) {
    fn();
    return;
  }
  when_idle_.push_back(std::move(fn));
}

void Publisher::RetryLater() {
  if (retry_scheduled_) return;
  retry_scheduled_ = true;
  auto alive = alive_;
  loop_.AddTimer(ttrpc::Clock::now() + std::chrono::seconds(1), [this, alive] {
    if (!*alive) return;
    retry_scheduled_ = false;
    Pump();
  });
}

void Publisher::Pump() {
  if (in_flight_ || retry_scheduled_) return;
  std::string payload;
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return;
    payload = queue_.front();
  }
  if (!client_ || client_->closed()) {
    if (client_) {
      // Not from the client's own callback: Pump runs from posts and timers only.
      client_.reset();
    }
    auto c = ttrpc::Client::Connect(loop_, address_);
    if (!c) {
      spdlog::debug("events: {}", c.error().ToString());
      RetryLater();
      return;
    }
    client_ = std::move(*c);
  }
  in_flight_ = true;
  ttrpc::CallOptions opts;
  opts.timeout = std::chrono::seconds(5);
  opts.metadata.Set("containerd-namespace-ttrpc", ns_);
  auto alive = alive_;
  client_->CallAsync(kService, "Forward", std::move(payload), opts,
                     [this, alive](Result<std::string> r) {
                       if (!*alive) return;
                       in_flight_ = false;
                       bool drop = r.has_value() || ++attempts_ >= kMaxAttempts;
                       if (!r) spdlog::warn("events: forward: {}", r.error().ToString());
                       bool idle = false;
                       if (drop) {
                         attempts_ = 0;
                         std::lock_guard lock(mu_);
                         if (!queue_.empty()) queue_.pop_front();
                         idle = queue_.empty();
                         if (idle) cv_.notify_all();
                       }
                       if (idle && !when_idle_.empty()) {
                         auto fns = std::move(when_idle_);
                         when_idle_.clear();
                         for (auto& fn : fns) fn();
                         if (!*alive) return;
                       }
                       if (r) {
                         loop_.Post([this, alive] {
                           if (*alive) Pump();
                         });
                       } else {
                         RetryLater();
                       }
                     });
}

}  // namespace berth::shim
