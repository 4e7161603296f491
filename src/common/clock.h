// WallClock: wall-clock time for timestamps that reach clients or disk (created_at, updated_at,
// lease and ingest expiry, commit times). One place instead of a NowNanos copy per file, and
// a FakeWallClock so tests can control time (LevelDB's Env::NowMicros, Envoy's TimeSource).
//
// Durations and deadlines use berth::Clock (std::chrono::steady_clock, common/event_loop.h);
// this is only the calendar.
#pragma once

#include <atomic>
#include <cstdint>

namespace berth {

class WallClock {
 public:
  virtual ~WallClock() = default;
  // Unix time in nanoseconds (UTC), as containerd's timestamps carry it.
  virtual int64_t NowNanos() const = 0;
  // The system's real-time clock (CLOCK_REALTIME). Process-wide, never destroyed.
  static WallClock& Real();
};

// Real-time now, unix nanoseconds: shorthand for WallClock::Real().NowNanos().
int64_t NowNanos();

// A clock that moves only when told to. Thread-safe.
class FakeWallClock final : public WallClock {
 public:
  explicit FakeWallClock(int64_t start_nanos = 1'700'000'000'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() const override { return now_.load(); }
  void Set(int64_t nanos) { now_.store(nanos); }
  void Advance(int64_t nanos) { now_.fetch_add(nanos); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace berth
