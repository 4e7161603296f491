// Returning memory to the kernel after work. glibc keeps freed memory in its arenas (one per
// thread that allocated, up to 8 per core by default) and grows its mmap threshold up to 32 MiB
// once a large block is freed, so after a pull (1 MiB read-ahead chunks, gRPC's 1-4 MiB
// messages, zstd windows, libarchive buffers) berthd kept ~20 MB it no longer used.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace berth::daemon {

// Sets malloc's policy for a long-lived daemon; call first thing in main, before any thread:
// at most 2 arenas (berthd's threads mostly wait; 2 cores' worth of contention is enough) and a
// fixed 256 KiB mmap threshold (large buffers are mapped and unmapped, never kept in a heap).
void ConfigureMalloc();

// Calls malloc_trim(0) once things are quiet after work: Poke() after a call ends; a trim
// runs `delay` later if `idle()` then holds (no call in flight), else at the next Poke.
// Never more than one trim per `delay`; an idle daemon's trimmer sleeps without timeouts.
class MemoryTrimmer {
 public:
  MemoryTrimmer(std::function<bool()> idle, std::chrono::milliseconds delay);
  ~MemoryTrimmer();  // stops and joins the thread
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  void Poke();
  int trims() const;  // how many trims ran (tests)

 private:
  void Loop();

  std::function<bool()> idle_;
  std::chrono::milliseconds delay_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;  // GUARDED_BY(mu_)
  bool stop_ = false;     // GUARDED_BY(mu_)
  int trims_ = 0;         // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace berth::daemon
