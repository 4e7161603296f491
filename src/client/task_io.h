// A task's stdio on the client side, as containerd's cio package does it for ctr: FIFOs in a
// private directory whose paths go in the Create/Exec request; the shim opens the other ends.
// We copy our stdin into the stdin FIFO and the stdout/stderr FIFOs to our stdout/stderr.
// With a terminal, the shim gives the process a pty and stdout carries it (no stderr FIFO);
// our side puts the local terminal in raw mode and reports its size (ResizePty).
//
// Every FIFO end we need is opened before the request that names it (read ends O_NONBLOCK,
// the stdin end O_RDWR), so a shim that opens its ends synchronously never waits for us.
#pragma once

#include <termios.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace berth::client {

struct FifoPaths {
  std::string stdin;  // "" when the process gets no stdin
  std::string stdout;
  std::string stderr;  // "" with a terminal
  bool terminal = false;
};

// The default FIFO root: "fifo" beside berthd's socket (so a daemon on a temp socket keeps
// its clients' FIFOs there too).
std::string DefaultFifoRoot(const std::string& socket_path);

// A fresh 0700 directory under `root` (created 0700 if missing) holding <id>-stdin,
// <id>-stdout and, without a terminal, <id>-stderr.
Result<FifoPaths> NewFifoSet(const std::string& root, const std::string& id, bool terminal);

// Removes the FIFOs of `paths` (only if they are FIFOs) and their directory when that leaves
// it empty. Missing files are fine.
void RemoveFifoSet(const FifoPaths& paths);

// Copies between our stdio and a task's FIFOs on background threads.
class IoCopier {
 public:
  // Opens our ends of `paths` (see the top of this file). `on_stdin_eof` runs once on the
  // stdin thread when our stdin ends (ctr calls CloseIO there).
  static Result<std::unique_ptr<IoCopier>> Open(const FifoPaths& paths,
                                                std::function<void()> on_stdin_eof);
  ~IoCopier();
  IoCopier(const IoCopier&) = delete;
  IoCopier& operator=(const IoCopier&) = delete;

  // Starts the copy threads.
  void Start();
  // Waits until stdout and stderr reached EOF (the shim closed them), at most `timeout`,
  // then stops all copying.
  void Wait(std::chrono::milliseconds timeout);

 private:
  IoCopier() = default;
  void CopyOut(int fifo, int to);
  void CopyIn(int fifo);
  void Stop();

  int stdin_fd_ = -1, stdout_fd_ = -1, stderr_fd_ = -1;
  int cancel_[2] = {-1, -1};  // a pipe; readable once Stop() was called
  std::function<void()> on_stdin_eof_;
  std::thread in_, out_, err_;
  std::atomic<int> outputs_open_{0};
};

// Puts fd 0 in raw mode (when it is a terminal) until destroyed.
class RawTerminal {
 public:
  RawTerminal();
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  bool active_ = false;
  struct termios saved_ {};
};

// The size of the terminal on fd 0 (or 1), as {width, height}; {0, 0} when there is none.
std::pair<unsigned, unsigned> TerminalSize();

// Catches `signals` from construction until destruction: they are blocked in this thread (and
// in threads created afterwards, so create this first) and passed to `handler` on a thread
// of its own. The mask is restored on destruction.
class SignalCatcher {
 public:
  SignalCatcher(const std::vector<int>& signals, std::function<void(int)> handler);
  ~SignalCatcher();
  SignalCatcher(const SignalCatcher&) = delete;
  SignalCatcher& operator=(const SignalCatcher&) = delete;

 private:
  sigset_t set_{}, old_{};
  std::function<void(int)> handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// "SIGKILL", "KILL", "kill" or "9" → 9. InvalidArgument for anything else.
Result<int> ParseSignal(std::string_view s);
// 9 → "SIGKILL" ("SIG<n>" for unknown numbers).
std::string SignalName(int sig);

}  // namespace berth::client
