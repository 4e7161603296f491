// Terminal support: the runtime allocates the pty inside the container and sends its master
// end over a Unix socket (`--console-socket`); we keep the master, copy it to the client's
// FIFOs and set its window size.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/fs.h"
#include "common/status.h"

namespace berth::oci {

// A listening socket `<dir>/pty.sock` in a fresh 0700 temp directory. Destruction closes it
// and removes the directory. One master per socket.
class ConsoleSocket {
 public:
  // `parent` "" = $XDG_RUNTIME_DIR, else /tmp (as go-runc's NewTempConsoleSocket).
  static Result<std::unique_ptr<ConsoleSocket>> Create(const std::string& parent = "");
  ~ConsoleSocket();

  ConsoleSocket(const ConsoleSocket&) = delete;
  ConsoleSocket& operator=(const ConsoleSocket&) = delete;

  const std::string& path() const { return path_; }

  // Accepts the runtime's connection and receives the pty master (SCM_RIGHTS). The runtime
  // sends it before `create`/`exec` returns, so callers do this right after. Errors:
  // DeadlineExceeded if nobody connects in `timeout`, InvalidArgument if what arrives is not
  // exactly one terminal fd.
  Result<UniqueFd> ReceiveMaster(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  ConsoleSocket() = default;
  std::string dir_;
  std::string path_;
  UniqueFd listener_;
};

// TIOCSWINSZ on a pty master: what ResizePty does.
Status ResizeTerminal(int fd, uint16_t width, uint16_t height);

}  // namespace berth::oci
