// Test helpers for trees deeper than PATH_MAX (issue 12 items 1, 2): built level by level
// through directory fds, since no path can name their bottom; a thread with a small stack, on
// which per-level recursion crashes at a depth a test can afford; a lowered fd limit, on which
// one fd per level fails.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include <gtest/gtest.h>

namespace berth::testing {

// A fresh temp dir for deep trees: on /dev/shm (tmpfs) when there is one. On a disk file system
// (ext4 mounted with discard here) removing a few thousand nested directories takes seconds
// per thousand, which is the disk's cost, not what the tests measure.
inline std::string DeepTreeTempDir(const std::string& prefix) {
  struct stat st;
  std::string base = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  std::string tmpl = base + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}

// Makes `depth` nested directories named `name` under directory `dir` (dir/name/name/...),
// with a file "f" in the deepest one when `leaf_file`. Holds two fds at a time.
inline void MakeDeepTree(const std::string& dir, int depth, const std::string& name = "d",
                         bool leaf_file = true) {
  int cur = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(cur, 0) << dir;
  for (int i = 0; i < depth; ++i) {
    if (::mkdirat(cur, name.c_str(), 0755) != 0 && errno != EEXIST) {
      ::close(cur);
      FAIL() << "mkdir at level " << i << ": " << std::strerror(errno);
    }
    int next = ::openat(cur, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ::close(cur);
    ASSERT_GE(next, 0) << "open at level " << i << ": " << std::strerror(errno);
    cur = next;
  }
  if (leaf_file) {
    int f = ::openat(cur, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    EXPECT_GE(f, 0);
    if (f >= 0) {
      EXPECT_EQ(::write(f, "x", 1), 1);
      ::close(f);
    }
  }
  ::close(cur);
}

// Runs `fn` on a thread with a `stack_bytes` stack and waits for it. Code that recurses per
// tree level overflows it (SIGSEGV: the test binary dies, which is the failure).
inline void RunOnSmallStack(size_t stack_bytes, std::function<void()> fn) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  pthread_t t;
  auto trampoline = [](void* p) -> void* {
    (*static_cast<std::function<void()>*>(p))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&t, &attr, trampoline, &fn), 0);
  pthread_attr_destroy(&attr);
  pthread_join(t, nullptr);
}

// Lowers the soft RLIMIT_NOFILE for its lifetime.
class ScopedFdLimit {
 public:
  explicit ScopedFdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &old_);
    rlimit r = old_;
    r.rlim_cur = soft;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
  ~ScopedFdLimit() { ::setrlimit(RLIMIT_NOFILE, &old_); }
  ScopedFdLimit(const ScopedFdLimit&) = delete;
  ScopedFdLimit& operator=(const ScopedFdLimit&) = delete;

 private:
  rlimit old_{};
};

// Open fds of this process.
inline int CountOpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace berth::testing
