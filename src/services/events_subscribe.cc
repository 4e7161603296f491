// Events.Subscribe on gRPC's callback API: one ServerWriteReactor per subscriber, driven by the
// exchange's waker and by gRPC's write completions, so no thread is held per subscriber (the
// synchronous handler held one each: 1,000 subscribers were 1,000 threads).
//
// A reactor writes one envelope at a time. When its queue is empty it arms the subscription's
// waker (Subscription::TryNext) and returns; the publisher's thread then starts the next write.
// It finishes when the subscription ends (ResourceExhausted for a subscriber that fell
// Subscription::kMaxQueued behind, Unavailable when the exchange closes at a graceful stop),
// when a write fails, or at once when the client cancels.
#include <mutex>

#include "common/filters.h"
#include "services/basic_services.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

using cs::events::v1::Envelope;

class SubscribeReactor final : public grpc::ServerWriteReactor<Envelope> {
 public:
  explicit SubscribeReactor(events::Exchange& exchange) : exchange_(exchange) {}

  // Registers with the exchange and starts pumping. May finish the stream before it returns
  // (an exchange already closed), but never deletes the reactor: OnDone runs on gRPC's executor.
  void Begin(filters::Filter filter) {
    sub_ = exchange_.Subscribe(std::move(filter), [this] { Pump(); });
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      // A failed write means the stream is broken (client gone): nothing more can be sent.
      if (!ok) cancelled_ = true;
    }
    Pump();
  }

  // A client cancel (or a dropped connection) ends the stream now. With a write outstanding,
  // that write fails at once and OnWriteDone finishes instead: Finish is never called while
  // a write is pending.
  void OnCancel() override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      if (finished_ || writing_) return;
      finished_ = true;
    }
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override {
    // After Unsubscribe no waker runs (or will), so `this` can go.
    if (sub_) exchange_.Unsubscribe(sub_);
    delete this;
  }

 private:
  // Starts the next write, or finishes the stream, or leaves the waker armed. Runs from Begin,
  // from the waker (a publisher's thread, with the exchange's lock held) and from OnWriteDone.
  // Decides under mu_, acts after releasing it: no lock of ours is held inside gRPC.
  void Pump() {
    grpc::Status end;
    bool write = false;
    {
      std::lock_guard lock(mu_);
      if (finished_ || writing_) return;
      if (cancelled_) {
        end = grpc::Status(grpc::StatusCode::CANCELLED, "context canceled");
      } else {
        auto next = sub_->TryNext();
        if (next && *next == nullptr) return;  // nothing queued: the waker is armed
        if (next) {
          const events::Envelope& env = **next;
          out_.Clear();
          *out_.mutable_timestamp() = ToTimestamp(env.timestamp_ns);
          out_.set_namespace_(env.ns);
          out_.set_topic(env.topic);
          // A forwarded envelope without an event goes out without one, as containerd's
          // does (an empty Any makes `ctr events` warn that it cannot unmarshal it).
          if (!env.type_url.empty() || !env.payload.empty()) {
            out_.mutable_event()->set_type_url(env.type_url);
            out_.mutable_event()->set_value(env.payload);
          }
          writing_ = true;
        } else {
          end = ToGrpc(next.error());
        }
      }
      write = writing_;
      if (!write) finished_ = true;
    }
    // out_ stays ours: other paths return early while writing_ is set, and OnWriteDone needs
    // the write we are about to start.
    if (write) {
      StartWrite(&out_);
    } else {
      Finish(end);
    }
  }

  events::Exchange& exchange_;
  std::shared_ptr<events::Subscription> sub_;
  std::mutex mu_;
  bool writing_ = false;   // GUARDED_BY(mu_): a StartWrite is outstanding (out_ is in use)
  bool finished_ = false;  // GUARDED_BY(mu_): Finish was called (or is about to be)
  bool cancelled_ = false; // GUARDED_BY(mu_): the client cancelled or the stream broke
  Envelope out_;           // the message being written; untouched while writing_
};

}  // namespace

grpc::ServerWriteReactor<Envelope>* EventsService::Subscribe(
    grpc::CallbackServerContext*, const cs::events::v1::SubscribeRequest* req) {
  auto* reactor = new SubscribeReactor(exchange_);
  try {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto filter = filters::ParseAll(exprs);
    if (!filter) {
      reactor->Finish(ToGrpc(filter.error()));
      return reactor;
    }
    reactor->Begin(std::move(*filter));
  } catch (const std::exception& e) {
    reactor->Finish(ToGrpc(Internal(std::string("Events.Subscribe: ") + e.what())));
  }
  return reactor;
}

}  // namespace berth::services
