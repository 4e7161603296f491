// EventLoop: the OCI runtime core's view of the process-wide berth::EventLoop (src/common) that
// runs every asynchronous job of the core — the reaper's signalfd, stdio copying between
// pipes/pty and client FIFOs, OOM notifications. Either it runs its own loop thread (Create()),
// or it borrows a loop the caller runs (Borrow(), e.g. the shim's, which also serves ttrpc on
// it: one loop thread for the whole shim).
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
#include <unordered_map>

#include "common/event_loop.h"
#include "common/fs.h"
#include "common/status.h"

namespace berth::oci {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;
  using HandlerId = uint64_t;

  // Starts a loop thread of its own (SIGPIPE and SIGCHLD blocked in it).
  static Result<std::unique_ptr<EventLoop>> Create();
  // Uses `loop`, which the caller runs (and which must outlive this object). The thread that
  // runs it must have SIGCHLD blocked (see reaper.h) and should ignore or block SIGPIPE.
  static std::unique_ptr<EventLoop> Borrow(berth::EventLoop& loop);
  // Own loop: stops and joins the thread. Handlers still registered are dropped (their fds
  // are the owners' business). Must not be called on the loop thread.
  ~EventLoop();

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers `fd` for `events` (EPOLLIN/EPOLLOUT/...; level-triggered). The fd stays owned by
  // the caller and must stay open until Remove(). Regular files cannot be polled (EPERM →
  // PermissionDenied); callers treat those as always ready.
  // REQUIRES: on the loop thread (or while no thread runs a borrowed loop).
  Result<HandlerId> Add(int fd, uint32_t events, Handler handler);
  // Changes the event mask; 0 pauses the handler without forgetting it.
  // REQUIRES: on the loop thread.
  Status Modify(HandlerId id, uint32_t events);
  // Forgets the handler; an event already collected for it in this round is dropped.
  // REQUIRES: on the loop thread. Call before closing the fd.
  void Remove(HandlerId id);

  // Runs `fn` on the loop thread soon. Safe from any thread, including the loop thread.
  void Post(std::function<void()> fn);
  // Runs `fn` on the loop thread and waits for it; runs inline when already on the loop thread
  // (or when no thread runs a borrowed loop).
  void RunSync(const std::function<void()>& fn);

  bool InLoopThread() const { return loop_->InLoopThread(); }
  berth::EventLoop& loop() const { return *loop_; }

 private:
  EventLoop() = default;

  std::unique_ptr<LoopThread> own_;  // null when borrowed
  berth::EventLoop* loop_ = nullptr;
  std::unordered_map<HandlerId, int> fds_;  // loop thread only
  HandlerId next_id_ = 1;
};

}  // namespace berth::oci
