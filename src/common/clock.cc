#include "common/clock.h"

#include <chrono>

namespace berth {
namespace {

class RealClock final : public Clock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock& Clock::Real() {
  static Clock* clock = new RealClock();
  return *clock;
}

int64_t NowNanos() { return Clock::Real().NowNanos(); }

}  // namespace berth
