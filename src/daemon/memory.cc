#include "daemon/memory.h"

#include <malloc.h>

namespace berth::daemon {

void ConfigureMalloc() {
  ::mallopt(M_ARENA_MAX, 2);
  // Setting it also turns off glibc's dynamic threshold (and the trim threshold's).
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}

MemoryTrimmer::MemoryTrimmer(std::function<bool()> idle, std::chrono::milliseconds delay)
    : idle_(std::move(idle)), delay_(delay), thread_([this] { Loop(); }) {}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void MemoryTrimmer::Poke() {
  {
    std::lock_guard lock(mu_);
    if (pending_) return;
    pending_ = true;
  }
  cv_.notify_all();
}

int MemoryTrimmer::trims() const {
  std::lock_guard lock(mu_);
  return trims_;
}

void MemoryTrimmer::Loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return pending_ || stop_; });
    if (stop_) return;
    // Let the burst of work end first; a stop cuts the wait short.
    if (cv_.wait_for(lock, delay_, [&] { return stop_; })) return;
    pending_ = false;
    if (!idle_()) continue;  // still busy: the next call's end pokes again
    lock.unlock();
    ::malloc_trim(0);
    lock.lock();
    ++trims_;
  }
}

}  // namespace berth::daemon
