#include "gc/gc.h"

#include "common/log.h"

namespace berth::gc {

Result<metadata::GcStats> Collector::Collect() {
  std::lock_guard pass(collect_mu_);
  return pass_();
}

void Collector::RunAndLog() {
  if (auto r = Collect(); !r) spdlog::error("gc: {}", r.error().ToString());
}

Collector::~Collector() { Stop(); }

void Collector::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Collector::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Collector::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!requested_) {
      cv_.wait(lock, [&] { return requested_ || stopping_; });
      continue;
    }
    requested_ = false;
    ++started_;
    lock.unlock();
    RunAndLog();
    lock.lock();
    ++finished_;
    cv_.notify_all();
  }
}

void Collector::Trigger(bool wait) {
  std::unique_lock lock(mu_);
  if (!thread_.joinable() || stopping_) {
    lock.unlock();
    // Not scheduled (tests, or stopping): a synchronous request still gets its pass.
    if (wait) {
      RunAndLog();
    }
    return;
  }
  requested_ = true;
  // The pass that will serve us is the next one to start.
  int64_t target = started_ + 1;
  cv_.notify_all();
  if (wait) cv_.wait(lock, [&] { return finished_ >= target || stopping_; });
}

int64_t Collector::passes() const {
  std::lock_guard lock(mu_);
  return finished_;
}

}  // namespace berth::gc
