// Deadline-based waiting for tests: poll a condition until it holds or a generous deadline
// passes, instead of sleeping a fixed time and hoping the other side was quick enough, or
// asserting that something finished under N ms (both fail on a loaded 2-core machine or under
// the sanitizers). Header-only; every test binary may include it ("../common/wait.h" or via
// the tests/ include root).
//
//   ASSERT_TRUE(berth::testing::WaitFor([&] { return pids().size() == 2; }));
//   berth::testing::FinishesWithin([&] { io = OpenIo(spec); }, "OpenIo");
//
// The deadlines say "forever" for the failure being tested, never "slow": a wait that times out
// means the condition was never going to hold.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>

namespace berth::testing {

// Long enough that only a real hang reaches it (ASan runs and a busy CI host are slow).
inline constexpr std::chrono::milliseconds kWaitTimeout{30'000};
inline constexpr std::chrono::milliseconds kWaitPoll{10};

// Polls `cond` every `poll` until it returns true or `timeout` passes; returns its last answer
// (evaluated once more at the deadline, so a condition that turned true late still counts).
template <typename Cond>
bool WaitFor(Cond&& cond, std::chrono::milliseconds timeout = kWaitTimeout,
             std::chrono::milliseconds poll = kWaitPoll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(poll);
  }
  return cond();
}

// Runs `fn` on its own thread and waits up to `timeout` for it to return: the check for
// "this call must not block" without an upper bound on how long it takes when it does not.
// A call still running at the deadline is a hang: the test process aborts naming `what` (its
// thread may hold references into the test's stack, so returning is not safe).
template <typename Fn>
void FinishesWithin(Fn&& fn, const char* what, std::chrono::milliseconds timeout = kWaitTimeout) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread t([done, &fn] {
    fn();
    done->set_value();
  });
  if (f.wait_for(timeout) != std::future_status::ready) {
    std::fprintf(stderr, "FATAL: %s did not finish within %lld ms\n", what,
                 static_cast<long long>(timeout.count()));
    std::abort();
  }
  t.join();
}

}  // namespace berth::testing
