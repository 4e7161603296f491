// Helpers for the ttrpc tests: temp dirs, a raw socket peer that speaks (or mangles) frames by
// hand, and child processes with captured output.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs.h"
#include "ttrpc/protocol.h"
#include "../common/wait.h"

namespace berth::ttrpc::testing {

using namespace std::chrono_literals;

// A directory under /tmp (short paths: sockets have a 108-byte limit), removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Join(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

struct Frame {
  FrameHeader header;
  std::string payload;
};

// One blocking client socket driven by hand.
class RawConn {
 public:
  // Connects to `path`; check valid().
  explicit RawConn(const std::string& path);
  explicit RawConn(UniqueFd fd) : fd_(std::move(fd)) {}
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }

  // Writes everything (MSG_NOSIGNAL); false on error.
  bool Write(std::string_view data);
  // Sends a request frame for `req` on `stream_id`.
  bool SendRequest(uint32_t stream_id, const Request& req);
  // Next frame, or nullopt on timeout or end of stream.
  std::optional<Frame> ReadFrame(std::chrono::milliseconds timeout = 5s);
  // Next frame decoded as a Response on `stream_id` (fails the test otherwise).
  std::optional<Response> ReadResponse(uint32_t stream_id, std::chrono::milliseconds timeout = 5s);
  // True if the peer closes the connection within `timeout` (frames before that are skipped).
  bool WaitClosed(std::chrono::milliseconds timeout = 5s);
  void Close() { fd_.reset(); }

 private:
  UniqueFd fd_;
  FrameReader reader_;
  std::vector<FrameReader::Event> ready_;
  bool eof_ = false;
};

// A listening Unix socket in the test process, for fake servers.
UniqueFd ListenUnix(const std::string& path);
// accept(2) with a timeout; invalid fd on timeout.
UniqueFd AcceptWithTimeout(int listener, std::chrono::milliseconds timeout = 5s);

// Runs argv to completion (at most `timeout`, then SIGKILL); returns exit code (128+sig when
// killed) and fills stdout/stderr.
int RunCommand(const std::vector<std::string>& argv, std::string* out, std::string* err,
               std::chrono::seconds timeout = 30s);

// A background child with stdout and stderr appended to `log_path`. Killed (SIGTERM, then
// SIGKILL after 10 s) and reaped by Stop() or the destructor.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Stop(); }
  bool Start(const std::vector<std::string>& argv, const std::string& log_path);
  int Stop();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

std::string ReadFileOrEmpty(const std::string& path);
// `n` deterministic pseudo-random bytes.
std::string PseudoRandomBytes(size_t n, uint32_t seed);
// Polls `pred` every 10 ms until it holds or `timeout` passes.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 5s);

}  // namespace berth::ttrpc::testing

#include <thread>

template <typename Pred>
bool berth::ttrpc::testing::WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  return berth::testing::WaitFor(pred, timeout);
}
