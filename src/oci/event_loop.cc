#include "oci/event_loop.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "common/log.h"

namespace berth::oci {

namespace {
constexpr uint64_t kWakeId = 0;
}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epfd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epfd_.valid()) return std::unexpected(StatusFromErrno(errno, "epoll_create1"));
  loop->wakefd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->wakefd_.valid()) return std::unexpected(StatusFromErrno(errno, "eventfd"));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(loop->epfd_.get(), EPOLL_CTL_ADD, loop->wakefd_.get(), &ev) != 0) {
    return std::unexpected(StatusFromErrno(errno, "epoll_ctl add eventfd"));
  }
  std::promise<std::thread::id> started;
  auto started_f = started.get_future();
  loop->thread_ = std::thread([l = loop.get(), &started] {
    // A write to a pipe whose reader is gone must fail with EPIPE, not kill the process.
    // SIGCHLD is consumed through the reaper's signalfd; it must never be delivered here.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    started.set_value(std::this_thread::get_id());
    l->Run();
  });
  loop->thread_id_ = started_f.get();
  return loop;
}

EventLoop::~EventLoop() {
  if (thread_.joinable()) {
    Post([this] { stopping_ = true; });
    thread_.join();
  }
}

Result<EventLoop::HandlerId> EventLoop::Add(int fd, uint32_t events, Handler handler) {
  HandlerId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return std::unexpected(StatusFromErrno(errno, "epoll_ctl add fd " + std::to_string(fd)));
  }
  handlers_.emplace(id, Entry{fd, std::make_shared<Handler>(std::move(handler))});
  return id;
}

Status EventLoop::Modify(HandlerId id, uint32_t events) {
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return NotFound("event loop handler " + std::to_string(id));
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) != 0) {
    return StatusFromErrno(errno, "epoll_ctl mod fd " + std::to_string(it->second.fd));
  }
  return Status::Ok();
}

void EventLoop::Remove(HandlerId id) {
  auto it = handlers_.find(id);
  if (it == handlers_.end()) return;
  ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  handlers_.erase(it);
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(wakefd_.get(), &one, sizeof one);
}

void EventLoop::RunSync(const std::function<void()>& fn) {
  if (InLoopThread()) {
    fn();
    return;
  }
  std::promise<void> done;
  auto f = done.get_future();
  Post([&] {
    fn();
    done.set_value();
  });
  f.wait();
}

void EventLoop::DrainPosted() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(wakefd_.get(), &count, sizeof count);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(post_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EventLoop::Run() {
  epoll_event events[64];
  while (!stopping_) {
    int n = ::epoll_wait(epfd_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event loop: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      HandlerId id = events[i].data.u64;
      if (id == kWakeId) {
        DrainPosted();
        continue;
      }
      auto it = handlers_.find(id);
      if (it == handlers_.end()) continue;  // removed by an earlier handler in this batch
      // Keep the handler alive even if it removes itself while running.
      std::shared_ptr<Handler> h = it->second.handler;
      (*h)(events[i].events);
    }
  }
}

}  // namespace berth::oci
