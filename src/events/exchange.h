// The events exchange: every service publishes here, subscribers (the Events service, later
// the CRI) receive what matches their filters. In-process, best effort, ordered per
// subscriber. A subscriber that falls kMaxQueued events behind is dropped rather than let the
// daemon's memory grow without bound (reliability anchor T43).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/filters.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace berth::events {

struct Envelope {
  int64_t timestamp_ns = 0;  // set by Publish when 0
  std::string ns;
  std::string topic;
  std::string type_url;  // Any.type_url, Go typeurl style: "containerd.events.TaskExit"
  std::string payload;   // Any.value
  // Field lookup into the decoded payload for `event.<field>` filters; may be empty.
  filters::Adaptor event_fields;
};

// Matches `namespace`, `topic` and `event.*` fieldpaths, as containerd's envelope adaptor.
std::optional<std::string> EnvelopeField(const Envelope& env,
                                         std::span<const std::string> fieldpath);

// Topic rules of containerd's events.Validate: non-empty, starts with '/', every component an
// identifier.
Status ValidateTopic(const std::string& topic);

// One subscriber's queue. Consumed either by blocking (Next, for in-process readers and
// tests) or without a thread (TryNext + the waker given to Exchange::Subscribe, for gRPC's
// callback API: one subscriber costs its queue, not a thread).
class Subscription {
 public:
  static constexpr size_t kMaxQueued = 8192;

  // Waits up to `timeout` for the next event. Returns nullopt on timeout. An error means the
  // subscription ended (closed, or dropped for falling behind).
  Result<std::optional<Envelope>> Next(std::chrono::milliseconds timeout);

  // Never blocks: the next event; nullptr when none is queued; an error once the subscription
  // ended (queued events come first). A nullptr answer arms the waker: it runs once, when the
  // next event is queued or the subscription ends, and is then disarmed until the next nullptr.
  Result<std::shared_ptr<const Envelope>> TryNext();

 private:
  friend class Exchange;
  Subscription(filters::Filter filter, std::function<void()> waker)
      : filter_(std::move(filter)), waker_(std::move(waker)) {}
  // Both run with the exchange's lock held (so a waker never outlives Unsubscribe).
  void Deliver(const std::shared_ptr<const Envelope>& env);
  void Close(Status why, bool wake);

  filters::Filter filter_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<const Envelope>> queue_ GUARDED_BY(mu_);  // shared by all subscribers
  Status closed_ GUARDED_BY(mu_);                                      // OK while open
  bool done_ GUARDED_BY(mu_) = false;
  std::function<void()> waker_ GUARDED_BY(mu_);  // cleared by Unsubscribe
  bool armed_ GUARDED_BY(mu_) = false;
  // Where the exchange lists us (guarded by the exchange's lock): O(1) unsubscribe.
  std::optional<std::list<std::shared_ptr<Subscription>>::iterator> pos_;
};

class Exchange {
 public:
  ~Exchange();

  // Validates namespace and topic, stamps the time, delivers to matching subscribers.
  Status Publish(Envelope env);
  // Re-broadcasts a complete envelope (from a shim); validates namespace and topic only (the
  // event may be empty, as containerd allows).
  Status Forward(Envelope env);

  // The subscription stays registered until Unsubscribe (or the exchange dies). `waker`
  // (optional) is how a thread-less consumer learns that TryNext has something (see there). It
  // runs on the publishing thread with the exchange's lock held: it must be quick, must not
  // block, and must not call back into this Exchange.
  std::shared_ptr<Subscription> Subscribe(filters::Filter filter,
                                          std::function<void()> waker = {});
  // Removes the subscription (its Next/TryNext then report Canceled). Once it returns, the
  // subscription's waker is not running and never runs again.
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);

  // Ends every subscription (their Next returns Unavailable); used when the daemon stops.
  // Later subscriptions start closed: dockerd re-subscribes at once, and a new stream would
  // hold the daemon's shutdown for its whole grace period.
  void CloseAll();

 private:
  std::mutex mu_;
  std::list<std::shared_ptr<Subscription>> subs_ GUARDED_BY(mu_);
  bool closed_ GUARDED_BY(mu_) = false;
};

}  // namespace berth::events
