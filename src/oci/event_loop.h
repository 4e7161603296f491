// EventLoop: one epoll thread that runs every asynchronous job of the OCI runtime core — the
// reaper's signalfd, stdio copying between pipes/pty and client FIFOs, OOM notifications.
//
// Why one thread and not a thread per copy (containerd uses a goroutine per stream): a shim
// lives as long as its containers and its memory is multiplied by their number; an epoll loop
// costs one stack however many streams there are, and all fd bookkeeping happens on one thread,
// so handlers need no locks of their own.
//
// Threading rules:
//  * Add/Modify/Remove and every handler run on the loop thread only. Other threads use Post()
//    (fire and forget) or RunSync() (wait for the result).
//  * Handlers must not block: no runtime CLI calls, no waiting for another thread that might
//    itself be waiting for the loop (the reaper delivers exits on this thread).
//  * SIGPIPE is blocked on the loop thread, so writing to a pipe whose reader went away fails
//    with EPIPE instead of killing the process.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/fs.h"
#include "common/status.h"

namespace berth::oci {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;
  using HandlerId = uint64_t;

  // Starts the loop thread.
  static Result<std::unique_ptr<EventLoop>> Create();
  // Stops and joins the thread. Handlers still registered are dropped (their fds are the
  // owners' business). Must not be called on the loop thread.
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers `fd` for `events` (EPOLLIN/EPOLLOUT/...; level-triggered). The fd stays owned by
  // the caller and must stay open until Remove(). Regular files cannot be polled (EPERM →
  // PermissionDenied); callers treat those as always ready.
  // REQUIRES: on the loop thread.
  Result<HandlerId> Add(int fd, uint32_t events, Handler handler);
  // Changes the event mask; 0 pauses the handler without forgetting it.
  // REQUIRES: on the loop thread.
  Status Modify(HandlerId id, uint32_t events);
  // Forgets the handler; an event already collected for it in this round is dropped.
  // REQUIRES: on the loop thread. Call before closing the fd.
  void Remove(HandlerId id);

  // Runs `fn` on the loop thread soon. Safe from any thread, including the loop thread.
  void Post(std::function<void()> fn);
  // Runs `fn` on the loop thread and waits for it; runs inline when already on the loop thread.
  void RunSync(const std::function<void()>& fn);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_id_; }

 private:
  EventLoop() = default;
  void Run();
  void DrainPosted();

  UniqueFd epfd_;
  UniqueFd wakefd_;  // eventfd: Post() wakes the loop through it
  std::thread thread_;
  std::thread::id thread_id_;

  struct Entry {
    int fd;
    std::shared_ptr<Handler> handler;
  };
  // Loop-thread only.
  std::unordered_map<HandlerId, Entry> handlers_;
  HandlerId next_id_ = 1;
  bool stopping_ = false;

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;  // GUARDED_BY(post_mu_)
};

}  // namespace berth::oci
