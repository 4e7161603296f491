// EventLoop: one epoll instance driven by one thread. ttrpc servers and clients run on it, and
// so does the OCI runtime core (reaper signalfd, stdio copies, OOM watches; oci::EventLoop is
// an adapter over this class), so a shim runs a single loop thread for everything.
//
// Threading: Run() is called by one thread, "the loop thread". Post() and Stop() may be called
// from any thread. Everything else (Watch/Modify/Unwatch/AddTimer/CancelTimer) must be called
// on the loop thread, or from the single controlling thread while no thread runs the loop.
// Callbacks always run on the loop thread and must not block.
//
// Lifetime: posting goes through a shared queue, so a Poster (and therefore a ttrpc Responder)
// may outlive the loop; posts made after the loop is destroyed are dropped. Closures still
// queued when the loop is destroyed are destroyed without running.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/fs.h"
#include "common/status.h"

namespace berth {

using Clock = std::chrono::steady_clock;

namespace internal {
struct PostQueue;
}

// Posts closures to an EventLoop from any thread; copyable; safe after the loop is gone.
class Poster {
 public:
  Poster() = default;
  // Queues `fn` to run on the loop thread. False (and `fn` destroyed) if the loop is gone.
  bool Post(std::function<void()> fn) const;
  // True on the thread currently inside the loop's Run().
  bool InLoopThread() const;

 private:
  friend class EventLoop;
  explicit Poster(std::shared_ptr<internal::PostQueue> q) : q_(std::move(q)) {}
  std::shared_ptr<internal::PostQueue> q_;
};

class EventLoop {
 public:
  using IoCallback = std::function<void(uint32_t epoll_events)>;
  using TimerId = uint64_t;

  // Creates the epoll and eventfd (both O_CLOEXEC).
  static Result<std::unique_ptr<EventLoop>> Create();
  // REQUIRES: no thread is running the loop.
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Dispatches events, timers and posted closures until Stop(). Closures posted before Stop
  // returns are run before Run returns.
  void Run();
  // Makes the running (or the next) Run return. Thread-safe.
  void Stop();
  bool InLoopThread() const;

  // Thread-safe; see Poster::Post.
  bool Post(std::function<void()> fn) { return poster().Post(std::move(fn)); }
  // Like Post, but only while a thread is inside Run(); false (fn not queued) otherwise. Lets
  // a caller choose between waiting for the loop and doing the work itself.
  bool PostIfRunning(std::function<void()>& fn);
  Poster poster() const { return Poster(queue_); }

  // Level-triggered watch of `fd` (not owned) for `events` (EPOLLIN, EPOLLOUT, ...). The
  // callback may Unwatch any fd, including its own.
  Status Watch(int fd, uint32_t events, IoCallback cb);
  Status Modify(int fd, uint32_t events);
  // Forgets `fd`; call before closing it. Unknown fds are ignored.
  void Unwatch(int fd);

  // Runs `cb` once at `when` (millisecond resolution). Returns an id for CancelTimer.
  TimerId AddTimer(Clock::time_point when, std::function<void()> cb);
  // Cancelling an unknown or already fired timer is a no-op.
  void CancelTimer(TimerId id);

 private:
  struct Watcher {
    int fd;
    IoCallback cb;
  };

  EventLoop(UniqueFd epoll, std::shared_ptr<internal::PostQueue> queue);
  void RunPosted();
  void RunTimers();
  int NextTimeoutMs() const;

  UniqueFd epoll_;
  std::shared_ptr<internal::PostQueue> queue_;
  std::atomic<bool> stop_{false};

  uint64_t next_id_ = 1;  // watcher and timer ids share one counter; 0 is the eventfd
  std::unordered_map<uint64_t, std::shared_ptr<Watcher>> watchers_;  // by id (epoll data)
  std::unordered_map<int, uint64_t> watcher_by_fd_;
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_when_;
};

// Runs `fn` on the loop thread and waits for it: inline when called on the loop thread or when
// no thread runs the loop, otherwise posted. For setup and teardown calls (Listen, Close).
void RunOnLoop(EventLoop& loop, std::function<void()> fn);

// An EventLoop plus the thread that runs it, for users without a loop of their own (a client
// in the daemon, tests). The destructor stops and joins the thread, then destroys the loop.
class LoopThread {
 public:
  static Result<std::unique_ptr<LoopThread>> Start();
  ~LoopThread();
  EventLoop& loop() { return *loop_; }

 private:
  explicit LoopThread(std::unique_ptr<EventLoop> loop);
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

}  // namespace berth
