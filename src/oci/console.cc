#include "oci/console.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace berth::oci {

Result<std::unique_ptr<ConsoleSocket>> ConsoleSocket::Create(const std::string& parent) {
  std::string base = parent;
  if (base.empty()) {
    const char* xdg = ::getenv("XDG_RUNTIME_DIR");
    base = xdg && *xdg ? xdg : "/tmp";
  }
  std::string tmpl = base + "/pty-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return std::unexpected(StatusFromErrno(errno, "create console socket dir in " + base));
  }
  std::unique_ptr<ConsoleSocket> s(new ConsoleSocket());
  s->dir_ = tmpl;
  s->path_ = tmpl + "/pty.sock";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (s->path_.size() >= sizeof addr.sun_path) {
    return std::unexpected(InvalidArgument("console socket path too long: " + s->path_));
  }
  std::memcpy(addr.sun_path, s->path_.c_str(), s->path_.size() + 1);
  s->listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->listener_.valid()) return std::unexpected(StatusFromErrno(errno, "socket"));
  if (::bind(s->listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return std::unexpected(StatusFromErrno(errno, "bind " + s->path_));
  }
  if (::listen(s->listener_.get(), 1) != 0) {
    return std::unexpected(StatusFromErrno(errno, "listen " + s->path_));
  }
  return s;
}

ConsoleSocket::~ConsoleSocket() {
  listener_.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
  if (!dir_.empty()) ::rmdir(dir_.c_str());
}

Result<UniqueFd> ConsoleSocket::ReceiveMaster(std::chrono::milliseconds timeout) {
  pollfd p{listener_.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return std::unexpected(StatusFromErrno(errno, "poll console socket"));
  if (rc == 0) {
    return std::unexpected(Status(Code::kDeadlineExceeded, "no pty master received on " + path_));
  }
  UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return std::unexpected(StatusFromErrno(errno, "accept " + path_));
  // The sender is blocked on nothing (it already wrote); a short wait covers scheduling.
  pollfd cp{conn.get(), POLLIN, 0};
  if (::poll(&cp, 1, 5000) <= 0) {
    return std::unexpected(Status(Code::kDeadlineExceeded, "pty master not sent on " + path_));
  }

  char name[4096];
  iovec iov{name, sizeof name};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::unexpected(StatusFromErrno(errno, "recvmsg " + path_));

  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return std::unexpected(InvalidArgument("console socket: truncated control message"));
  }
  if (fds.size() != 1) {
    return std::unexpected(
        InvalidArgument("console socket: expected 1 fd, got " + std::to_string(fds.size())));
  }
  if (!::isatty(fds[0].get())) {
    return std::unexpected(InvalidArgument("console socket: received fd is not a terminal"));
  }
  return std::move(fds[0]);
}

Status ResizeTerminal(int fd, uint16_t width, uint16_t height) {
  winsize ws{};
  ws.ws_col = width;
  ws.ws_row = height;
  if (::ioctl(fd, TIOCSWINSZ, &ws) != 0) return StatusFromErrno(errno, "TIOCSWINSZ");
  return Status::Ok();
}

}  // namespace berth::oci
