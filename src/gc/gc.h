// Garbage collection scheduling: when passes run. What a pass does — mark and sweep over the
// metadata, then the backends' sweep — is metadata::GarbageCollector's (metadata/gc.h).
//
// A pass runs once before the daemon serves (Collect, to clean up after a crash), then on the
// background thread soon after every Trigger. Triggers that arrive while a pass is pending
// coalesce into that pass; Trigger(true) (a `sync` delete) returns once a pass that began after
// the call has finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "metadata/gc.h"
#include "metadata/gc_trigger.h"

namespace berth::gc {

class Collector : public metadata::GcTrigger {
 public:
  // One full pass (metadata::GarbageCollector::Collect in berthd; a fake in tests).
  using Pass = std::function<Result<metadata::GcStats>()>;

  explicit Collector(Pass pass) : pass_(std::move(pass)) {}
  // Schedules passes of `collector`, which must outlive this object.
  explicit Collector(metadata::GarbageCollector& collector)
      : Collector([&collector] { return collector.Collect(); }) {}
  ~Collector() override;

  // One full pass, now, on the caller's thread. Serialised with other passes.
  Result<metadata::GcStats> Collect();

  // Background scheduling: Start the thread; Stop ends it after the pass in progress.
  void Start();
  void Stop();
  void Trigger(bool wait) override;

  // Passes the background thread has finished.
  int64_t passes() const;

 private:
  void Loop();
  void RunAndLog();

  Pass pass_;
  std::mutex collect_mu_;  // one pass at a time

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  int64_t started_ GUARDED_BY(mu_) = 0;  // passes started
  int64_t finished_ GUARDED_BY(mu_) = 0;  // passes finished
  std::thread thread_;
};

}  // namespace berth::gc
