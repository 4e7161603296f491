// The GC scheduler (gc/gc.h) with a fake pass: synchronous and background triggers, coalescing
// of requests, errors. What a pass does is tested in tests/metadata/gc_test.cc.
#include "gc/gc.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace berth::gc {
namespace {

// Counts passes; can hold a pass inside until released.
class FakePass {
 public:
  Result<metadata::GcStats> Run() {
    std::unique_lock lock(mu_);
    ++started_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_; });
    ++finished_;
    if (fail_) return std::unexpected(Internal("pass failed for the test"));
    metadata::GcStats stats;
    stats.content_removed = finished_;
    return stats;
  }
  void Hold() {
    std::lock_guard lock(mu_);
    hold_ = true;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      hold_ = false;
    }
    cv_.notify_all();
  }
  // Waits (up to a generous deadline) until `n` passes have started.
  bool WaitStarted(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return started_ >= n; });
  }
  int finished() {
    std::lock_guard lock(mu_);
    return finished_;
  }
  void SetFail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  bool fail_ = false;
  int started_ = 0;
  int finished_ = 0;
};

class SchedulerTest : public ::testing::Test {
 protected:
  FakePass pass_;
  Collector gc_{[this] { return pass_.Run(); }};
};

TEST_F(SchedulerTest, CollectRunsOnePassNow) {
  auto stats = gc_.Collect();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->content_removed, 1);
  EXPECT_EQ(pass_.finished(), 1);
  EXPECT_EQ(gc_.passes(), 0);  // counts background passes only
}

TEST_F(SchedulerTest, SyncTriggerWithoutTheThreadRunsAPassOnTheCaller) {
  gc_.Trigger(false);  // nothing scheduled: dropped
  EXPECT_EQ(pass_.finished(), 0);
  gc_.Trigger(true);
  EXPECT_EQ(pass_.finished(), 1);
}

TEST_F(SchedulerTest, SyncTriggerWaitsForAPassThatStartsAfterIt) {
  gc_.Start();
  gc_.Trigger(true);
  EXPECT_EQ(gc_.passes(), 1);
  EXPECT_EQ(pass_.finished(), 1);
  // A pass already running when a sync trigger arrives does not count: the caller's delete may
  // have happened after that pass read the metadata.
  pass_.Hold();
  gc_.Trigger(false);
  ASSERT_TRUE(pass_.WaitStarted(2));
  std::atomic<bool> returned = false;
  std::thread waiter([&] {
    gc_.Trigger(true);
    returned = true;
  });
  pass_.Release();
  waiter.join();
  EXPECT_TRUE(returned);
  EXPECT_EQ(pass_.finished(), 3);
  gc_.Stop();
}

TEST_F(SchedulerTest, TriggersWhileAPassRunsCoalesce) {
  gc_.Start();
  pass_.Hold();
  gc_.Trigger(false);
  ASSERT_TRUE(pass_.WaitStarted(1));
  for (int i = 0; i < 10; ++i) gc_.Trigger(false);
  pass_.Release();
  // The ten requests became one pass; the sync trigger adds at most one more.
  gc_.Trigger(true);
  int passes = pass_.finished();
  EXPECT_GE(passes, 2);
  EXPECT_LE(passes, 3);
  gc_.Stop();
}

TEST_F(SchedulerTest, AFailedPassIsLoggedAndTheLoopGoesOn) {
  gc_.Start();
  pass_.SetFail(true);
  gc_.Trigger(true);
  pass_.SetFail(false);
  gc_.Trigger(true);
  EXPECT_EQ(gc_.passes(), 2);
  gc_.Stop();
}

TEST_F(SchedulerTest, StopReleasesASyncWaiter) {
  gc_.Start();
  pass_.Hold();
  gc_.Trigger(false);
  ASSERT_TRUE(pass_.WaitStarted(1));
  std::thread waiter([&] { gc_.Trigger(true); });
  std::thread stopper([&] { gc_.Stop(); });
  pass_.Release();
  waiter.join();
  stopper.join();
  EXPECT_GE(pass_.finished(), 1);
}

}  // namespace
}  // namespace berth::gc
