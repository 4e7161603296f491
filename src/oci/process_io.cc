#include "oci/process_io.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "oci/console.h"

namespace berth::oci {

namespace {

constexpr size_t kPumpBuffer = 32 * 1024;

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Result<std::shared_ptr<UniqueFd>> MakeShared(int fd, const std::string& what) {
  if (fd < 0) return std::unexpected(StatusFromErrno(errno, what));
  return std::make_shared<UniqueFd>(fd);
}

// pipe2 with O_CLOEXEC; [0] read end, [1] write end.
Status MakePipe(std::shared_ptr<UniqueFd> (&p)[2]) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return StatusFromErrno(errno, "pipe2");
  p[0] = std::make_shared<UniqueFd>(fds[0]);
  p[1] = std::make_shared<UniqueFd>(fds[1]);
  return Status::Ok();
}

Status SetNonBlocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    return StatusFromErrno(errno, "fcntl O_NONBLOCK");
  }
  return Status::Ok();
}

bool IsFifo(const std::string& path, Status* err) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    *err = StatusFromErrno(errno, "stat " + path);
    return false;
  }
  return S_ISFIFO(st.st_mode);
}

std::string StripFifoScheme(const std::string& s) {
  return s.starts_with("fifo://") ? s.substr(7) : s;
}

Status MkdirAll(const std::string& dir, mode_t mode) {
  if (dir.empty() || dir == "/") return Status::Ok();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) return Status::Ok();
  auto slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0)
    RETURN_IF_ERROR(MkdirAll(dir.substr(0, slash), mode));
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return StatusFromErrno(errno, "mkdir " + dir);
  }
  return Status::Ok();
}

}  // namespace

Result<StdioUri> ParseStdioUri(std::string_view uri) {
  StdioUri out;
  size_t sep = uri.find("://");
  if (sep == std::string_view::npos) {
    out.scheme = "fifo";
    out.path = std::string(uri);
    return out;
  }
  out.scheme = std::string(uri.substr(0, sep));
  std::string_view rest = uri.substr(sep + 3);
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (out.scheme == "fifo") {
    out.path = std::string(rest);
    return out;
  }
  if (out.scheme != "file" && out.scheme != "binary") {
    return std::unexpected(InvalidArgument("unknown STDIO scheme " + out.scheme));
  }
  size_t slash = rest.find('/');  // skip an authority part ("file://host/path" → "/path")
  if (slash == std::string_view::npos) {
    return std::unexpected(InvalidArgument("STDIO URI without a path: " + std::string(uri)));
  }
  out.path = PercentDecode(rest.substr(slash));
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    out.args.push_back(PercentDecode(item.substr(0, eq)));
    if (eq != std::string_view::npos) out.args.push_back(PercentDecode(item.substr(eq + 1)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pump: copies src → dst on the loop until src reaches EOF; then closes dst. All methods run on
// the loop thread.

class ProcessIo::Pump : public std::enable_shared_from_this<Pump> {
 public:
  Pump(EventLoop* loop, std::shared_ptr<UniqueFd> src, std::shared_ptr<UniqueFd> dst,
       std::vector<std::shared_ptr<UniqueFd>> hold, bool discard_on_dst_error,
       std::function<void()> on_done)
      : loop_(loop),
        src_(std::move(src)),
        dst_(std::move(dst)),
        hold_(std::move(hold)),
        discard_on_dst_error_(discard_on_dst_error),
        on_done_(std::move(on_done)),
        buf_(new char[kPumpBuffer]) {}

  Status Start() { return WatchSrc(); }

  // Stops without calling on_done (the owner is shutting down).
  void Stop() {
    Release();
    on_done_ = nullptr;
  }

 private:
  void OnReadable() {
    ssize_t n = ::read(src_->get(), buf_.get(), kPumpBuffer);
    if (n > 0) {
      if (discarding_) return;
      len_ = static_cast<size_t>(n);
      off_ = 0;
      Flush();
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // 0 = EOF; EIO = the pty's slave side is closed; anything else ends the copy too.
    Finish();
  }

  void Flush() {
    while (off_ < len_) {
      ssize_t n = ::write(dst_->get(), buf_.get() + off_, len_ - off_);
      if (n > 0) {
        off_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        WaitWritable();
        return;
      }
      DstBroken();
      return;
    }
    len_ = off_ = 0;
    if (dst_id_) {
      loop_->Remove(dst_id_);
      dst_id_ = 0;
      if (!WatchSrc().ok()) Finish();
    }
  }

  // The src handler is removed, not masked, while dst is full: epoll reports EPOLLHUP even
  // with an empty mask, and a process that exits while the client stalls would spin the loop.
  Status WatchSrc() {
    std::weak_ptr<Pump> weak = weak_from_this();
    ASSIGN_OR_RETURN(src_id_, loop_->Add(src_->get(), EPOLLIN, [weak](uint32_t) {
      if (auto p = weak.lock()) p->OnReadable();
    }));
    return Status::Ok();
  }

  void WaitWritable() {
    if (dst_id_) return;
    loop_->Remove(src_id_);
    src_id_ = 0;
    std::weak_ptr<Pump> weak = weak_from_this();
    auto id = loop_->Add(dst_->get(), EPOLLOUT, [weak](uint32_t) {
      if (auto p = weak.lock()) p->Flush();
    });
    if (!id) {
      DstBroken();
      return;
    }
    dst_id_ = *id;
  }

  void DstBroken() {
    if (!discard_on_dst_error_) {
      Finish();
      return;
    }
    // Keep draining the process's pipe so a lost log file does not block or kill it.
    spdlog::warn("stdio copy: destination failed ({}); discarding output", std::strerror(errno));
    discarding_ = true;
    len_ = off_ = 0;
    if (dst_id_) {
      loop_->Remove(dst_id_);
      dst_id_ = 0;
    }
    if (!src_id_ && !WatchSrc().ok()) Finish();
  }

  void Release() {
    if (src_id_) loop_->Remove(src_id_);
    if (dst_id_) loop_->Remove(dst_id_);
    src_id_ = dst_id_ = 0;
    src_.reset();
    dst_.reset();
    hold_.clear();
  }

  void Finish() {
    Release();
    if (auto done = std::move(on_done_)) done();
    on_done_ = nullptr;
  }

  EventLoop* const loop_;
  std::shared_ptr<UniqueFd> src_, dst_;
  std::vector<std::shared_ptr<UniqueFd>> hold_;
  const bool discard_on_dst_error_;
  std::function<void()> on_done_;
  std::unique_ptr<char[]> buf_;
  size_t len_ = 0, off_ = 0;
  bool discarding_ = false;
  EventLoop::HandlerId src_id_ = 0, dst_id_ = 0;
};

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<ProcessIo>> ProcessIo::Open(EventLoop* loop, Reaper* reaper,
                                                   const StdioSpec& stdio, const IoOptions& opts) {
  std::unique_ptr<ProcessIo> io(new ProcessIo(loop, reaper, stdio, opts));
  if (!stdio.terminal && stdio.IsNull()) {
    io->null_io_ = true;
    return io;
  }
  StdioUri uri{"fifo", "", {}};
  if (!stdio.out.empty()) {
    ASSIGN_OR_RETURN(uri, ParseStdioUri(stdio.out));
  }
  if (uri.scheme == "binary") {
    io->binary_ = true;
    RETURN_IF_ERROR(io->StartLogger(uri));
  }
  RETURN_IF_ERROR(io->OpenEndpoints(uri));
  if (stdio.terminal || io->binary_) return io;

  auto give = [&](std::shared_ptr<UniqueFd>(&p)[2], int process_end) -> Status {
    RETURN_IF_ERROR(MakePipe(p));
    int ours = process_end == 1 ? 0 : 1;
    RETURN_IF_ERROR(SetNonBlocking(p[ours]->get()));
    if (opts.ChownNeeded()) {
      if (::fchown(p[process_end]->get(), opts.io_uid, opts.io_gid) != 0) {
        return StatusFromErrno(errno, "chown stdio pipe");
      }
    }
    return Status::Ok();
  };
  // stdin: the process reads [0]; we write [1]. Stored as [0] = ours, [1] = process's.
  if (io->stdin_fifo_) {
    std::shared_ptr<UniqueFd> p[2];
    RETURN_IF_ERROR(give(p, 0));
    io->in_pipe_[0] = p[1];
    io->in_pipe_[1] = p[0];
  }
  if (io->out_dst_) RETURN_IF_ERROR(give(io->out_pipe_, 1));
  if (io->err_dst_) RETURN_IF_ERROR(give(io->err_pipe_, 1));
  return io;
}

Status ProcessIo::OpenEndpoints(const StdioUri& uri) {
  // stdin: not wired for a logging binary unless a terminal carries it (as containerd).
  if (!stdio_.in.empty() && (!binary_ || stdio_.terminal)) {
    std::string path = StripFifoScheme(stdio_.in);
    Status err;
    if (!IsFifo(path, &err)) {
      return err.ok() ? InvalidArgument("stdin " + path + " is not a FIFO") : err;
    }
    ASSIGN_OR_RETURN(stdin_fifo_,
                     MakeShared(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC),
                                "open stdin FIFO " + path));
    stdin_path_ = path;  // our own writer comes later: OpenStdinKeeper
  }
  if (binary_) return Status::Ok();

  if (uri.scheme == "file") {
    auto slash = uri.path.find_last_of('/');
    RETURN_IF_ERROR(MkdirAll(uri.path.substr(0, slash), 0755));
    ASSIGN_OR_RETURN(out_dst_, MakeShared(::open(uri.path.c_str(),
                                                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644),
                                          "open log file " + uri.path));
    if (!stdio_.err.empty() && !stdio_.terminal) err_dst_ = out_dst_;
    return Status::Ok();
  }

  auto open_output = [&](const std::string& spec, std::shared_ptr<UniqueFd>& dst,
                         std::shared_ptr<UniqueFd>& keep) -> Status {
    std::string path = StripFifoScheme(spec);
    Status err;
    if (IsFifo(path, &err)) {
      ASSIGN_OR_RETURN(keep, MakeShared(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC),
                                        "open FIFO " + path));
      ASSIGN_OR_RETURN(dst, MakeShared(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC),
                                       "open FIFO writer " + path));
      return Status::Ok();
    }
    if (!err.ok()) return err;
    ASSIGN_OR_RETURN(
        dst, MakeShared(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC), "open " + path));
    return Status::Ok();
  };
  if (!stdio_.out.empty()) RETURN_IF_ERROR(open_output(stdio_.out, out_dst_, out_keep_));
  if (!stdio_.err.empty() && !stdio_.terminal) {
    bool same_file = StripFifoScheme(stdio_.err) == StripFifoScheme(stdio_.out) && !out_keep_;
    if (same_file) {
      err_dst_ = out_dst_;  // one fd, closed when both copies are done
    } else {
      RETURN_IF_ERROR(open_output(stdio_.err, err_dst_, err_keep_));
    }
  }
  return Status::Ok();
}

Status ProcessIo::StartLogger(const StdioUri& uri) {
  RETURN_IF_ERROR(MakePipe(out_pipe_));
  RETURN_IF_ERROR(MakePipe(err_pipe_));
  std::shared_ptr<UniqueFd> ready[2];
  RETURN_IF_ERROR(MakePipe(ready));
  if (opts_.ChownNeeded()) {
    for (auto* p : {&out_pipe_[1], &err_pipe_[1]}) {
      if (::fchown((*p)->get(), opts_.io_uid, opts_.io_gid) != 0) {
        return StatusFromErrno(errno, "chown stdio pipe");
      }
    }
  }
  SpawnSpec spec;
  spec.argv.push_back(uri.path);
  spec.argv.insert(spec.argv.end(), uri.args.begin(), uri.args.end());
  spec.inherit_env = false;
  spec.env = {"CONTAINER_ID=" + opts_.id, "CONTAINER_NAMESPACE=" + opts_.ns};
  spec.fds = {{3, out_pipe_[0]->get()}, {4, err_pipe_[0]->get()}, {5, ready[1]->get()}};
  auto spawned = reaper_->Spawn(spec);
  if (!spawned) return spawned.error().Wrap("start logging binary " + uri.path);
  logger_ = *spawned;
  ready[1].reset();

  pollfd p{ready[0]->get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(opts_.logger_ready_timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) {
    StopLogger();
    return Status(Code::kDeadlineExceeded, "logging binary " + uri.path + " did not get ready");
  }
  char b;
  [[maybe_unused]] ssize_t n = ::read(ready[0]->get(), &b, 1);  // a byte or EOF: both mean ready
  return Status::Ok();
}

void ProcessIo::StopLogger() {
  if (!logger_) return;
  auto exit = logger_->exit;
  pid_t pid = logger_->pid;
  logger_.reset();
  if (exit->TryGet()) return;
  ::kill(pid, SIGTERM);  // let it flush
  if (exit->WaitFor(opts_.logger_stop_timeout)) return;
  spdlog::warn("logging binary pid={} did not exit after SIGTERM; killing", pid);
  ::kill(pid, SIGKILL);
  exit->WaitFor(std::chrono::seconds(5));
}

ProcessIo::~ProcessIo() { Close(); }

std::optional<RuntimeStdio> ProcessIo::runtime_stdio() const {
  if (stdio_.terminal) return std::nullopt;
  RuntimeStdio s;
  if (null_io_) return s;
  if (in_pipe_[1]) s.in = in_pipe_[1]->get();
  if (out_pipe_[1]) s.out = out_pipe_[1]->get();
  if (err_pipe_[1]) s.err = err_pipe_[1]->get();
  return s;
}

Status ProcessIo::AddPump(std::shared_ptr<UniqueFd> src, std::shared_ptr<UniqueFd> dst,
                          std::vector<std::shared_ptr<UniqueFd>> hold, bool output) {
  std::function<void()> done;
  if (output) {
    std::lock_guard lock(mu_);
    ++outputs_running_;
    done = [this] {
      std::lock_guard l(mu_);
      --outputs_running_;
      cv_.notify_all();
    };
  }
  auto pump = std::make_shared<Pump>(loop_, std::move(src), std::move(dst), std::move(hold),
                                     /*discard_on_dst_error=*/output, std::move(done));
  Status st = pump->Start();
  if (!st.ok()) {
    if (output) {
      std::lock_guard lock(mu_);
      --outputs_running_;
    }
    return st;
  }
  pumps_.push_back(std::move(pump));
  return Status::Ok();
}

Status ProcessIo::Start() {
  if (stdio_.terminal) return FailedPrecondition("Start() is for pipe stdio; use AttachConsole");
  // Our copies of the process's ends must go, or the copies never see EOF.
  in_pipe_[1].reset();
  out_pipe_[1].reset();
  err_pipe_[1].reset();
  if (null_io_) return Status::Ok();
  if (binary_) {
    out_pipe_[0].reset();  // the logging binary has its own
    err_pipe_[0].reset();
    return Status::Ok();
  }
  if (in_pipe_[0]) RETURN_IF_ERROR(OpenStdinKeeper());
  Status st;
  loop_->RunSync([&] {
    if (in_pipe_[0] && stdin_fifo_) {
      st = AddPump(std::move(stdin_fifo_), std::move(in_pipe_[0]), {}, false);
      if (!st.ok()) return;
    }
    if (out_pipe_[0] && out_dst_) {
      st = AddPump(std::move(out_pipe_[0]), out_dst_, {std::move(out_keep_)}, true);
      if (!st.ok()) return;
    }
    if (err_pipe_[0] && err_dst_) {
      st = AddPump(std::move(err_pipe_[0]), err_dst_, {std::move(err_keep_)}, true);
      if (!st.ok()) return;
    }
  });
  out_dst_.reset();
  err_dst_.reset();
  return st;
}

Status ProcessIo::AttachConsole(UniqueFd master) {
  if (!stdio_.terminal) return FailedPrecondition("AttachConsole without a terminal");
  RETURN_IF_ERROR(SetNonBlocking(master.get()));
  ASSIGN_OR_RETURN(auto out_src, MakeShared(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3), "dup"));
  std::shared_ptr<UniqueFd> in_dst;
  if (stdin_fifo_) {
    // A second descriptor: epoll refuses the same fd twice, and closing stdin must not close
    // the output side.
    ASSIGN_OR_RETURN(in_dst, MakeShared(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3), "dup"));
  }
  std::shared_ptr<UniqueFd> out_dst = binary_ ? out_pipe_[1] : out_dst_;
  if (binary_) {
    out_pipe_[0].reset();
    err_pipe_[0].reset();
    err_pipe_[1].reset();  // a terminal has no stderr: the logger sees EOF on fd 4 at once
    out_pipe_[1].reset();
  }
  console_ = std::move(master);
  if (in_dst) RETURN_IF_ERROR(OpenStdinKeeper());
  Status st;
  loop_->RunSync([&] {
    if (out_dst) {
      st = AddPump(out_src, out_dst, {std::move(out_keep_)}, true);
      if (!st.ok()) return;
    }
    if (in_dst) st = AddPump(std::move(stdin_fifo_), in_dst, {}, false);
  });
  out_dst_.reset();
  return st;
}

Status ProcessIo::Resize(uint16_t width, uint16_t height) {
  std::lock_guard lock(mu_);
  if (!console_.valid()) return Status::Ok();
  return ResizeTerminal(console_.get(), width, height);
}

void ProcessIo::CloseStdin() {
  std::lock_guard lock(mu_);
  stdin_closed_ = true;
  stdin_closer_.reset();
}

Status ProcessIo::OpenStdinKeeper() {
  if (!stdin_fifo_ || stdin_path_.empty()) return Status::Ok();
  std::lock_guard lock(mu_);
  if (stdin_closed_) return Status::Ok();
  // The client already wrote and closed its end: let the process see that EOF.
  pollfd p{stdin_fifo_->get(), POLLIN, 0};
  if (::poll(&p, 1, 0) > 0 && (p.revents & POLLHUP)) return Status::Ok();
  stdin_closer_.reset(::open(stdin_path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (!stdin_closer_.valid()) {
    return StatusFromErrno(errno, "open stdin FIFO writer " + stdin_path_);
  }
  return Status::Ok();
}

bool ProcessIo::WaitOutput(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return outputs_running_ == 0; });
}

void ProcessIo::Close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  loop_->RunSync([&] {
    for (auto& p : pumps_) p->Stop();
    pumps_.clear();
  });
  {
    std::lock_guard lock(mu_);
    outputs_running_ = 0;
    console_.reset();
    stdin_closer_.reset();
  }
  cv_.notify_all();
  stdin_fifo_.reset();
  out_dst_.reset();
  err_dst_.reset();
  out_keep_.reset();
  err_keep_.reset();
  for (auto* p : {&in_pipe_, &out_pipe_, &err_pipe_}) {
    (*p)[0].reset();
    (*p)[1].reset();
  }
  StopLogger();
}

}  // namespace berth::oci
