#include "client/task_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>

#include "common/validate.h"

namespace berth::client {
namespace {

constexpr size_t kCopyBuffer = 32 << 10;

struct SignalEntry {
  const char* name;
  int number;
};
constexpr SignalEntry kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS},
};

// Writes all of `data` to `fd`; false when the reader is gone or `cancel` became readable.
bool WriteAll(int fd, const char* data, size_t n, int cancel = -1) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p[2] = {{fd, POLLOUT, 0}, {cancel, POLLIN, 0}};
        ::poll(p, cancel >= 0 ? 2 : 1, 100);
        if (p[1].revents) return false;
        continue;
      }
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

std::string RandomHex() {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  unsigned seed =
      static_cast<unsigned>(::getpid()) ^
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count());
  for (int i = 0; i < 16; ++i) {
    seed = seed * 1103515245u + 12345u;
    out += kHex[(seed >> 16) & 15];
  }
  return out;
}

}  // namespace

std::string DefaultFifoRoot(const std::string& socket_path) {
  return (std::filesystem::path(socket_path).parent_path() / "fifo").string();
}

Result<FifoPaths> NewFifoSet(const std::string& root, const std::string& id, bool terminal) {
  if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(StatusFromErrno(errno, "create fifo root " + root));
  }
  std::string dir;
  for (int attempt = 0;; ++attempt) {
    dir = root + "/" + RandomHex();
    if (::mkdir(dir.c_str(), 0700) == 0) break;
    if (errno != EEXIST || attempt > 10) {
      return std::unexpected(StatusFromErrno(errno, "create fifo dir " + dir));
    }
  }
  FifoPaths p;
  p.terminal = terminal;
  p.stdin = dir + "/" + id + "-stdin";
  p.stdout = dir + "/" + id + "-stdout";
  if (!terminal) p.stderr = dir + "/" + id + "-stderr";
  for (const std::string* f : {&p.stdin, &p.stdout, &p.stderr}) {
    if (f->empty()) continue;
    if (::mkfifo(f->c_str(), 0700) != 0) {
      Status s = StatusFromErrno(errno, "mkfifo " + *f);
      RemoveFifoSet(p);
      return std::unexpected(s);
    }
  }
  return p;
}

void RemoveFifoSet(const FifoPaths& paths) {
  std::string dir;
  for (const std::string* f : {&paths.stdin, &paths.stdout, &paths.stderr}) {
    if (f->empty()) continue;
    struct stat st {};
    if (::lstat(f->c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) ::unlink(f->c_str());
    dir = std::filesystem::path(*f).parent_path().string();
  }
  if (!dir.empty()) ::rmdir(dir.c_str());  // only when empty
}

Result<std::unique_ptr<IoCopier>> IoCopier::Open(const FifoPaths& paths,
                                                 std::function<void()> on_stdin_eof) {
  std::unique_ptr<IoCopier> io(new IoCopier());
  io->on_stdin_eof_ = std::move(on_stdin_eof);
  if (::pipe2(io->cancel_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return std::unexpected(StatusFromErrno(errno, "pipe"));
  }
  auto open = [](const std::string& path, int flags, int& fd) -> Status {
    if (path.empty()) return Status();
    fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return StatusFromErrno(errno, "open " + path);
    return Status();
  };
  // O_RDWR: never blocks, and a shim that opens its read end synchronously finds a writer.
  RETURN_IF_ERROR(open(paths.stdin, O_RDWR | O_NONBLOCK, io->stdin_fd_));
  RETURN_IF_ERROR(open(paths.stdout, O_RDONLY | O_NONBLOCK, io->stdout_fd_));
  RETURN_IF_ERROR(open(paths.stderr, O_RDONLY | O_NONBLOCK, io->stderr_fd_));
  return io;
}

void IoCopier::Start() {
  if (stdout_fd_ >= 0) {
    ++outputs_open_;
    out_ = std::thread([this] { CopyOut(stdout_fd_, STDOUT_FILENO); });
  }
  if (stderr_fd_ >= 0) {
    ++outputs_open_;
    err_ = std::thread([this] { CopyOut(stderr_fd_, STDERR_FILENO); });
  }
  if (stdin_fd_ >= 0) in_ = std::thread([this] { CopyIn(stdin_fd_); });
}

// Linux reports POLLHUP on a FIFO's read end only once a writer has come and gone, so polling
// waits for the shim to open its end and then for it to close it.
void IoCopier::CopyOut(int fifo, int to) {
  std::string buf(kCopyBuffer, '\0');
  for (;;) {
    pollfd p[2] = {{fifo, POLLIN, 0}, {cancel_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fifo, buf.data(), buf.size());
      if (n > 0) {
        WriteAll(to, buf.data(), static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;  // EOF: every writer is gone
    }
    if (p[1].revents) break;
  }
  --outputs_open_;
}

void IoCopier::CopyIn(int fifo) {
  std::string buf(kCopyBuffer, '\0');
  for (;;) {
    pollfd p[2] = {{STDIN_FILENO, POLLIN, 0}, {cancel_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
    ssize_t n = (p[0].revents & POLLNVAL) ? 0 : ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    if (!WriteAll(fifo, buf.data(), static_cast<size_t>(n), cancel_[0])) break;
  }
  // Our stdin ended: drop our writer and tell the shim (which may hold one of its own).
  ::close(stdin_fd_);
  stdin_fd_ = -1;
  if (on_stdin_eof_) on_stdin_eof_();
}

void IoCopier::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (outputs_open_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Stop();
}

void IoCopier::Stop() {
  if (cancel_[1] >= 0) {
    char c = 1;
    (void)!::write(cancel_[1], &c, 1);
  }
  for (std::thread* t : {&in_, &out_, &err_}) {
    if (t->joinable()) t->join();
  }
}

IoCopier::~IoCopier() {
  Stop();
  for (int fd : {stdin_fd_, stdout_fd_, stderr_fd_, cancel_[0], cancel_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

RawTerminal::RawTerminal() {
  if (::isatty(STDIN_FILENO) != 1 || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
  struct termios raw = saved_;
  ::cfmakeraw(&raw);  // as containerd's console.SetRaw: the container's pty does the cooking
  active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
}

RawTerminal::~RawTerminal() {
  if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

std::pair<unsigned, unsigned> TerminalSize() {
  struct winsize ws {};
  for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return {ws.ws_col, ws.ws_row};
  }
  return {0, 0};
}

SignalCatcher::SignalCatcher(const std::vector<int>& signals, std::function<void(int)> handler)
    : handler_(std::move(handler)) {
  sigemptyset(&set_);
  for (int s : signals) sigaddset(&set_, s);
  pthread_sigmask(SIG_BLOCK, &set_, &old_);
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      timespec ts = {0, 100 * 1000 * 1000};
      int sig = ::sigtimedwait(&set_, nullptr, &ts);
      if (sig > 0) handler_(sig);
    }
  });
}

SignalCatcher::~SignalCatcher() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

Result<int> ParseSignal(std::string_view s) {
  int n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec == std::errc() && p == s.data() + s.size()) {
    if (n > 0 && n < NSIG) return n;
    return Err(Code::kInvalidArgument, "invalid signal number " + std::string(s));
  }
  std::string name(s);
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.starts_with("SIG")) name = name.substr(3);
  for (const auto& e : kSignals) {
    if (name == e.name) return e.number;
  }
  if (name.starts_with("RTMIN")) {
    int off = name.size() > 6 ? std::atoi(name.c_str() + 6) : 0;
    return SIGRTMIN + off;
  }
  return Err(Code::kInvalidArgument, "unknown signal " + Quote(s));
}

std::string SignalName(int sig) {
  for (const auto& e : kSignals) {
    if (e.number == sig && std::string_view(e.name) != "IOT") return std::string("SIG") + e.name;
  }
  return "SIG" + std::to_string(sig);
}

}  // namespace berth::client
