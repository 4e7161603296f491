#include "oci/event_loop.h"

#include <pthread.h>
#include <signal.h>

namespace berth::oci {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  // The thread inherits our signal mask: block SIGPIPE (a write to a pipe whose reader is gone
  // must fail with EPIPE, not kill the process) and SIGCHLD (consumed through the reaper's
  // signalfd; it must never be delivered to the loop thread) around its creation.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigaddset(&set, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &set, &old);
  auto thread = LoopThread::Start();
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!thread) return std::unexpected(thread.error());
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->own_ = std::move(*thread);
  loop->loop_ = &loop->own_->loop();
  return loop;
}

std::unique_ptr<EventLoop> EventLoop::Borrow(berth::EventLoop& l) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->loop_ = &l;
  return loop;
}

EventLoop::~EventLoop() {
  RunSync([this] {
    for (auto& [id, fd] : fds_) loop_->Unwatch(fd);
    fds_.clear();
  });
  own_.reset();
}

Result<EventLoop::HandlerId> EventLoop::Add(int fd, uint32_t events, Handler handler) {
  RETURN_IF_ERROR(loop_->Watch(fd, events, std::move(handler)));
  HandlerId id = next_id_++;
  fds_[id] = fd;
  return id;
}

Status EventLoop::Modify(HandlerId id, uint32_t events) {
  auto it = fds_.find(id);
  if (it == fds_.end()) return NotFound("event loop handler " + std::to_string(id));
  return loop_->Modify(it->second, events);
}

void EventLoop::Remove(HandlerId id) {
  auto it = fds_.find(id);
  if (it == fds_.end()) return;
  loop_->Unwatch(it->second);
  fds_.erase(it);
}

void EventLoop::Post(std::function<void()> fn) { loop_->Post(std::move(fn)); }

void EventLoop::RunSync(const std::function<void()>& fn) { RunOnLoop(*loop_, fn); }

}  // namespace berth::oci
