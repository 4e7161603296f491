#include "common/clock.h"

#include <chrono>

namespace berth {
namespace {

class RealClock final : public WallClock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

WallClock& WallClock::Real() {
  static WallClock* clock = new RealClock();
  return *clock;
}

int64_t NowNanos() { return WallClock::Real().NowNanos(); }

}  // namespace berth
