#include "events/exchange.h"

#include "common/validate.h"

namespace berth::events {

std::optional<std::string> EnvelopeField(const Envelope& env,
                                         std::span<const std::string> fieldpath) {
  if (fieldpath.empty()) return std::nullopt;
  const std::string& head = fieldpath[0];
  if (head == "namespace") return env.ns;
  if (head == "topic") return env.topic;
  if (head == "event" && env.event_fields) return env.event_fields(fieldpath.subspan(1));
  return std::nullopt;
}

Status ValidateTopic(const std::string& topic) {
  if (topic.empty()) return InvalidArgument("must not be empty for event");
  if (topic[0] != '/') return InvalidArgument("must start with '/' for event");
  if (topic.size() == 1) return InvalidArgument("must have at least one component");
  size_t start = 1;
  while (start <= topic.size()) {
    size_t end = topic.find('/', start);
    if (end == std::string::npos) end = topic.size();
    if (Status s = ValidateIdentifier(topic.substr(start, end - start)); !s.ok()) {
      return s.Wrap("failed validation on component " + Quote(topic.substr(start, end - start)));
    }
    start = end + 1;
  }
  return Status::Ok();
}

Result<std::optional<Envelope>> Subscription::Next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Envelope env = *queue_.front();
    queue_.pop_front();
    return env;
  }
  if (done_) return std::unexpected(closed_);
  return std::nullopt;
}

Result<std::shared_ptr<const Envelope>> Subscription::TryNext() {
  std::lock_guard lock(mu_);
  if (!queue_.empty()) {
    std::shared_ptr<const Envelope> env = std::move(queue_.front());
    queue_.pop_front();
    return env;
  }
  if (done_) return std::unexpected(closed_);
  armed_ = true;
  return nullptr;
}

void Subscription::Deliver(const std::shared_ptr<const Envelope>& env) {
  if (!filter_.Match([&](std::span<const std::string> fp) { return EnvelopeField(*env, fp); })) {
    return;
  }
  std::function<void()> wake;
  {
    std::lock_guard lock(mu_);
    if (done_) return;
    if (queue_.size() >= kMaxQueued) {
      queue_.clear();
      queue_.shrink_to_fit();
      done_ = true;
      closed_ = Status(Code::kResourceExhausted,
                       "events subscriber fell " + std::to_string(kMaxQueued) +
                           " events behind and was dropped");
    } else {
      queue_.push_back(env);
    }
    cv_.notify_all();
    if (armed_ && waker_) {
      armed_ = false;
      wake = waker_;
    }
  }
  // Outside our lock: the waker typically calls TryNext.
  if (wake) wake();
}

void Subscription::Close(Status why, bool wake) {
  std::function<void()> waker;
  {
    std::lock_guard lock(mu_);
    if (!done_) {
      done_ = true;
      closed_ = std::move(why);
    }
    cv_.notify_all();
    if (!wake) {
      waker_ = nullptr;
    } else if (armed_ && waker_) {
      armed_ = false;
      waker = waker_;
    }
  }
  if (waker) waker();
}

Exchange::~Exchange() { CloseAll(); }

void Exchange::CloseAll() {
  std::lock_guard lock(mu_);
  closed_ = true;
  for (auto& s : subs_) s->Close(Unavailable("events exchange shut down"), /*wake=*/true);
}

Status Exchange::Publish(Envelope env) {
  if (env.timestamp_ns == 0) {
    env.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  }
  return Forward(std::move(env));
}

Status Exchange::Forward(Envelope env) {
  if (Status s = ValidateIdentifier(env.ns); !s.ok()) return s.Wrap("envelope namespace");
  if (Status s = ValidateTopic(env.topic); !s.ok()) return s.Wrap("envelope topic");
  // No check of the event itself: containerd forwards an envelope without one.
  // One copy, shared by every subscriber's queue.
  auto shared = std::make_shared<const Envelope>(std::move(env));
  std::lock_guard lock(mu_);
  for (auto& s : subs_) s->Deliver(shared);
  return Status::Ok();
}

std::shared_ptr<Subscription> Exchange::Subscribe(filters::Filter filter,
                                                  std::function<void()> waker) {
  auto sub = std::shared_ptr<Subscription>(new Subscription(std::move(filter), std::move(waker)));
  std::lock_guard lock(mu_);
  if (closed_) {
    sub->Close(Unavailable("events exchange shut down"), /*wake=*/false);
    return sub;
  }
  sub->pos_ = subs_.insert(subs_.end(), sub);
  return sub;
}

void Exchange::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  // Under our lock: every waker call happens under it too, so none is running once we return.
  std::lock_guard lock(mu_);
  sub->Close(Status(Code::kCanceled, "unsubscribed"), /*wake=*/false);
  if (sub->pos_) {
    subs_.erase(*sub->pos_);
    sub->pos_.reset();
  }
}

}  // namespace berth::events
