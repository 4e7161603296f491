#include "common/event_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <future>

#include "common/thread_annotations.h"

namespace berth {

namespace internal {

struct PostQueue {
  std::mutex mu;
  std::vector<std::function<void()>> items GUARDED_BY(mu);
  bool closed GUARDED_BY(mu) = false;  // the loop is gone
  bool running GUARDED_BY(mu) = false;  // a thread is inside Run()
  UniqueFd wake;                             // eventfd, lives as long as any Poster
  std::atomic<std::thread::id> owner{};      // the thread inside Run(), if any

  void Wake() {
    uint64_t one = 1;
    // EAGAIN means the counter is saturated: the loop is awake anyway.
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
  }
};

}  // namespace internal

bool Poster::InLoopThread() const { return q_ && q_->owner.load() == std::this_thread::get_id(); }

bool Poster::Post(std::function<void()> fn) const {
  if (!q_) return false;
  bool wake;
  {
    std::lock_guard lock(q_->mu);
    if (q_->closed) return false;
    wake = q_->items.empty();
    q_->items.push_back(std::move(fn));
  }
  if (wake) q_->Wake();
  return true;
}

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) return std::unexpected(StatusFromErrno(errno, "epoll_create1"));
  auto q = std::make_shared<internal::PostQueue>();
  q->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!q->wake.valid()) return std::unexpected(StatusFromErrno(errno, "eventfd"));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, q->wake.get(), &ev) != 0) {
    return std::unexpected(StatusFromErrno(errno, "epoll_ctl eventfd"));
  }
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(ep), std::move(q)));
}

EventLoop::EventLoop(UniqueFd epoll, std::shared_ptr<internal::PostQueue> queue)
    : epoll_(std::move(epoll)), queue_(std::move(queue)) {}

EventLoop::~EventLoop() {
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard lock(queue_->mu);
    queue_->closed = true;
    dropped.swap(queue_->items);
  }
  // Destroyed outside the lock: a destructor may Post (and is refused).
  dropped.clear();
  // Moved out first: a destroyed closure may call CancelTimer or Unwatch.
  auto timers = std::move(timers_);
  timers_.clear();
  timer_when_.clear();
  timers.clear();
  auto watchers = std::move(watchers_);
  watchers_.clear();
  watcher_by_fd_.clear();
  watchers.clear();
}

bool EventLoop::InLoopThread() const { return queue_->owner.load() == std::this_thread::get_id(); }

void EventLoop::Run() {
  queue_->owner.store(std::this_thread::get_id());
  {
    std::lock_guard lock(queue_->mu);
    queue_->running = true;
  }
  epoll_event events[64];
  while (!stop_.load()) {
    int n = ::epoll_wait(epoll_.get(), events, 64, NextTimeoutMs());
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event loop: epoll_wait: {}", std::strerror(errno));
      break;
    }
    bool posted = false;
    for (int i = 0; i < n; ++i) {
      uint64_t id = events[i].data.u64;
      if (id == 0) {
        posted = true;
        continue;
      }
      auto it = watchers_.find(id);
      if (it == watchers_.end()) continue;      // unwatched by an earlier callback of this batch
      std::shared_ptr<Watcher> w = it->second;  // the callback may unwatch itself
      w->cb(events[i].events);
    }
    if (posted) RunPosted();
    RunTimers();
  }
  std::vector<std::function<void()>> last;
  {
    std::lock_guard lock(queue_->mu);
    queue_->running = false;
    last.swap(queue_->items);
  }
  for (auto& fn : last) fn();
  last.clear();
  stop_.store(false);
  queue_->owner.store(std::thread::id());
}

void EventLoop::Stop() {
  stop_.store(true);
  queue_->Wake();
}

bool EventLoop::PostIfRunning(std::function<void()>& fn) {
  bool wake;
  {
    std::lock_guard lock(queue_->mu);
    if (!queue_->running || queue_->closed) return false;
    wake = queue_->items.empty();
    queue_->items.push_back(std::move(fn));
  }
  if (wake) queue_->Wake();
  return true;
}

void EventLoop::RunPosted() {
  uint64_t count;
  // Drain the eventfd before taking the items, so a post racing with us wakes us again.
  [[maybe_unused]] ssize_t r = ::read(queue_->wake.get(), &count, sizeof count);
  std::vector<std::function<void()>> items;
  {
    std::lock_guard lock(queue_->mu);
    items.swap(queue_->items);
  }
  for (auto& fn : items) fn();
}

Status EventLoop::Watch(int fd, uint32_t events, IoCallback cb) {
  if (watcher_by_fd_.contains(fd)) return AlreadyExists("fd " + std::to_string(fd) + " watched");
  uint64_t id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return StatusFromErrno(errno, "epoll_ctl add");
  }
  watchers_[id] = std::make_shared<Watcher>(Watcher{fd, std::move(cb)});
  watcher_by_fd_[fd] = id;
  return Status::Ok();
}

Status EventLoop::Modify(int fd, uint32_t events) {
  auto it = watcher_by_fd_.find(fd);
  if (it == watcher_by_fd_.end()) return NotFound("fd " + std::to_string(fd) + " not watched");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    return StatusFromErrno(errno, "epoll_ctl mod");
  }
  return Status::Ok();
}

void EventLoop::Unwatch(int fd) {
  auto it = watcher_by_fd_.find(fd);
  if (it == watcher_by_fd_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  watchers_.erase(it->second);
  watcher_by_fd_.erase(it);
}

EventLoop::TimerId EventLoop::AddTimer(Clock::time_point when, std::function<void()> cb) {
  TimerId id = next_id_++;
  timers_.emplace(std::make_pair(when, id), std::move(cb));
  timer_when_[id] = when;
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timer_when_.find(id);
  if (it == timer_when_.end()) return;
  timers_.erase({it->second, id});
  timer_when_.erase(it);
}

void EventLoop::RunTimers() {
  auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_when_.erase(node.key().second);
    node.mapped()();
  }
}

int EventLoop::NextTimeoutMs() const {
  if (timers_.empty()) return -1;
  auto left = timers_.begin()->first.first - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  // Round up so a timer never fires early and the loop does not spin on 0 ms waits.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX / 2));
}

void RunOnLoop(EventLoop& loop, std::function<void()> fn) {
  if (loop.InLoopThread()) {
    fn();
    return;
  }
  std::promise<void> done;
  std::function<void()> task = [&fn, &done] {
    fn();
    done.set_value();
  };
  if (loop.PostIfRunning(task)) {
    done.get_future().wait();
  } else {
    fn();
  }
}

Result<std::unique_ptr<LoopThread>> LoopThread::Start() {
  ASSIGN_OR_RETURN(auto loop, EventLoop::Create());
  std::unique_ptr<LoopThread> lt(new LoopThread(std::move(loop)));
  // Wait until the thread is inside Run, so RunOnLoop never races with the loop starting.
  std::promise<void> started;
  lt->loop_->Post([&started] { started.set_value(); });
  lt->thread_ = std::thread([l = lt->loop_.get()] { l->Run(); });
  started.get_future().wait();
  return lt;
}

LoopThread::LoopThread(std::unique_ptr<EventLoop> loop) : loop_(std::move(loop)) {}

LoopThread::~LoopThread() {
  if (thread_.joinable()) {
    loop_->Stop();
    thread_.join();
  }
}

}  // namespace berth
