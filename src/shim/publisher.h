// Publisher: forwards the shim's events (/tasks/exit, ...) to the daemon over ttrpc, as
// containerd 1.6 shims do: containerd.services.events.ttrpc.v1.Events/Forward on TTRPC_ADDRESS.
//
// Never blocks its caller: events go to a bounded queue (2048, oldest dropped beyond it) that
// the loop thread drains one call at a time, in order. A failed call is retried (up to 5
// attempts per event, then dropped, as containerd's shim publisher does); while the daemon is
// unreachable (restarting) we redial once a second and the queue waits.
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "ttrpc/client.h"
#include "ttrpc/event_loop.h"

namespace berth::shim {

class Publisher {
 public:
  // `loop` must outlive the publisher. `address`: the daemon's ttrpc socket ("" = drop events).
  Publisher(ttrpc::EventLoop& loop, std::string address, std::string ns);
  ~Publisher();

  // Queues `event` for `topic` (e.g. "/tasks/exit"). Thread-safe. The Any type_url is the
  // message's full name ("containerd.events.TaskExit"), as containerd's typeurl registers it.
  void Publish(const std::string& topic, const google::protobuf::MessageLite& event);
  // Waits until the queue is empty (or `timeout`). Not on the loop thread.
  bool Flush(std::chrono::milliseconds timeout);
  // True when nothing waits to be delivered. Thread-safe.
  bool Idle();
  // Runs `fn` on the loop thread once nothing waits to be delivered (now, if so). Loop thread.
  void WhenIdle(std::function<void()> fn);

 private:
  void Pump();  // loop thread
  void RetryLater();

  ttrpc::EventLoop& loop_;
  const std::string address_;
  const std::string ns_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_ GUARDED_BY(mu_);  // serialized ForwardRequests
  // Loop thread only.
  std::unique_ptr<ttrpc::Client> client_;
  bool in_flight_ = false;
  bool retry_scheduled_ = false;
  int attempts_ = 0;
  std::vector<std::function<void()>> when_idle_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace berth::shim
