// ProcessIo: connects one container process's stdio to what the client asked for.
//
// Clients (ctr, dockerd, CRI) name their side in the Task API as strings:
//   * a FIFO path (also "fifo://path") per stream, any of them "" = not wired;
//     all three "" = the process gets /dev/null;
//   * stdout "file:///path": stdout and stderr are appended to that file;
//   * stdout "binary:///path?k=v&x": a logging binary is started with fd 3 = stdout pipe,
//     fd 4 = stderr pipe, fd 5 = a pipe it writes or closes when ready, and environment
//     CONTAINER_ID / CONTAINER_NAMESPACE; query items become its arguments (k v x).
//     stdin is not wired in binary mode (as containerd).
// The process never gets the client's FIFOs: it gets pipes we create (or a pty), and the
// EventLoop copies between the two sides — so a client that goes away cannot block or kill
// the container, and the shim can keep a writer on stdin until CloseIO.
//
// FIFO opening never blocks (containerd's fifo package spends goroutines on it): for an output
// FIFO we first open a read end O_NONBLOCK (always succeeds), then the write end (succeeds
// because a reader — us — exists). That read end also keeps the FIFO from breaking when the
// client's reader closes; output then waits in the FIFO (up to its 64 KiB) and beyond that the
// container blocks on write, as with containerd. For stdin we open the read end O_NONBLOCK and
// keep a write end ourselves: without a writer, a FIFO read returns EOF; with ours open, the
// process sees EOF only after CloseIO and the client's writer is gone (containerd's
// `openStdin` "stdin closer").
//
// Lifecycle: Open() (before runtime create/exec) → runtime_stdio() to the runtime → Start()
// once create/exec returned [or AttachConsole() in terminal mode] → ... → WaitOutput() after
// the exit → Close(). Thread-safe.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "oci/event_loop.h"
#include "oci/oci_runtime.h"
#include "oci/reaper.h"

namespace berth::oci {

// The Task API's stdio fields for one process.
// (Named in/out/err: stdin and friends are macros in <cstdio>.)
struct StdioSpec {
  std::string in;
  std::string out;
  std::string err;
  bool terminal = false;
  bool IsNull() const { return in.empty() && out.empty() && err.empty(); }
};

// A parsed stdout URI: scheme "fifo" (also for plain paths), "file" or "binary".
struct StdioUri {
  std::string scheme;
  std::string path;
  std::vector<std::string> args;  // binary: query items in order, "k=v" → k, v
};
Result<StdioUri> ParseStdioUri(std::string_view uri);

struct IoOptions {
  std::string id;  // container or exec id, for the logging binary
  std::string ns;  // containerd namespace, for the logging binary
  // Owner of the pipe ends the container gets (runc Options.io_uid/io_gid, for a container
  // user that must reopen /proc/self/fd/1). -1 = leave as created (chown's convention).
  uid_t io_uid = static_cast<uid_t>(-1);
  gid_t io_gid = static_cast<gid_t>(-1);

  // True when io_uid/io_gid ask for an owner other than ours.
  bool ChownNeeded() const {
    return (io_uid != static_cast<uid_t>(-1) && io_uid != ::geteuid()) ||
           (io_gid != static_cast<gid_t>(-1) && io_gid != ::getegid());
  }
  // How long a logging binary has to signal readiness, and to exit after SIGTERM on Close
  // (containerd: no limit, and 12 s).
  std::chrono::milliseconds logger_ready_timeout = std::chrono::seconds(30);
  std::chrono::milliseconds logger_stop_timeout = std::chrono::seconds(12);
};

class ProcessIo {
 public:
  // Opens the client's endpoints, creates the pipes, starts a logging binary. Never blocks on
  // a FIFO. Errors: NotFound (a FIFO or file missing), InvalidArgument (bad URI, stdin not a
  // FIFO), and whatever starting the logging binary returns.
  static Result<std::unique_ptr<ProcessIo>> Open(EventLoop* loop, Reaper* reaper,
                                                 const StdioSpec& stdio, const IoOptions& opts);
  ~ProcessIo();  // Close()

  ProcessIo(const ProcessIo&) = delete;
  ProcessIo& operator=(const ProcessIo&) = delete;

  // What to pass to the runtime as the process's stdio; nullopt in terminal mode.
  std::optional<RuntimeStdio> runtime_stdio() const;

  // After create/exec returned: closes our copies of the process's pipe ends (else EOF never
  // comes) and starts copying. Not for terminal mode.
  Status Start();
  // Terminal mode: takes the pty master and copies client stdin → master → client stdout.
  Status AttachConsole(UniqueFd master);
  // TIOCSWINSZ on the pty master; a no-op for a process without a terminal (as containerd).
  Status Resize(uint16_t width, uint16_t height);
  // Closes our writer on the stdin FIFO (CloseIO with stdin=true).
  void CloseStdin();
  // Waits until the output copies reached EOF (everyone holding the process's stdout/stderr
  // exited). false on timeout.
  bool WaitOutput(std::chrono::milliseconds timeout);
  // Stops copying, closes every fd, stops the logging binary. Idempotent.
  void Close();

  bool terminal() const { return stdio_.terminal; }

 private:
  class Pump;
  ProcessIo(EventLoop* loop, Reaper* reaper, StdioSpec stdio, IoOptions opts)
      : loop_(loop), reaper_(reaper), stdio_(std::move(stdio)), opts_(std::move(opts)) {}
  Status OpenEndpoints(const StdioUri& uri);
  Status StartLogger(const StdioUri& uri);
  Status AddPump(std::shared_ptr<UniqueFd> src, std::shared_ptr<UniqueFd> dst,
                 std::vector<std::shared_ptr<UniqueFd>> hold, bool output);
  void StopLogger();
  Status OpenStdinKeeper();

  EventLoop* const loop_;
  Reaper* const reaper_;
  const StdioSpec stdio_;
  const IoOptions opts_;

  bool null_io_ = false;
  bool binary_ = false;
  // Client side.
  std::shared_ptr<UniqueFd> stdin_fifo_;           // read end of the stdin FIFO
  // Our writer on the stdin FIFO (keeps the process's stdin open across client reconnects until
  // CloseIO, as the runc shim's). Opened by OpenStdinKeeper when the copy starts, not with the
  // reader: a client that writes its whole input and closes before the task is created (ctr
  // with short piped input, which then never sends CloseIO) must still give the process EOF.
  UniqueFd stdin_closer_;
  std::string stdin_path_;
  bool stdin_closed_ GUARDED_BY(mu_) = false;  // CloseIO came
  std::shared_ptr<UniqueFd> out_dst_, err_dst_;    // FIFO write ends or the log file
  std::shared_ptr<UniqueFd> out_keep_, err_keep_;  // read ends keeping the FIFOs alive
  // Process side: [0] our end, [1] the process's end (stdin: [0] = write, [1] = read).
  std::shared_ptr<UniqueFd> in_pipe_[2], out_pipe_[2], err_pipe_[2];
  UniqueFd console_;  // pty master (a dup; the copies hold their own)
  std::optional<Spawned> logger_;

  std::mutex mu_;
  std::condition_variable cv_;
  int outputs_running_ GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<Pump>> pumps_;  // loop thread
  bool closed_ GUARDED_BY(mu_) = false;
};

}  // namespace berth::oci
