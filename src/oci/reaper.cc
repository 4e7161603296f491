#include "oci/reaper.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/log.h"

extern char** environ;

namespace berth::oci {

int ExitStatusFromWaitStatus(int wait_status) {
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return 255;
}

// ---------------------------------------------------------------------------------------------
// ExitWaiter

std::optional<Exit> ExitWaiter::TryGet() const {
  std::lock_guard lock(mu_);
  return exit_;
}

Exit ExitWaiter::Wait() const {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return exit_.has_value(); });
  return *exit_;
}

std::optional<Exit> ExitWaiter::WaitFor(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return exit_.has_value(); })) return std::nullopt;
  return exit_;
}

void ExitWaiter::OnExit(std::function<void(const Exit&)> fn) {
  std::unique_lock lock(mu_);
  if (exit_) {
    Exit e = *exit_;
    lock.unlock();
    loop_->Post([fn = std::move(fn), e] { fn(e); });
    return;
  }
  callbacks_.push_back(std::move(fn));
}

void ExitWaiter::Complete(const Exit& exit) {
  std::vector<std::function<void(const Exit&)>> callbacks;
  {
    std::lock_guard lock(mu_);
    if (exit_) return;
    exit_ = exit;
    callbacks.swap(callbacks_);
  }
  cv_.notify_all();
  for (auto& fn : callbacks) fn(exit);
}

// ---------------------------------------------------------------------------------------------
// Spawning

std::string LookPath(const std::string& name) {
  auto executable = [](const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) return executable(name) ? name : "";
  const char* env_path = ::getenv("PATH");
  std::string path = env_path && *env_path
                         ? env_path
                         : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (executable(candidate)) return candidate;
    start = end + 1;
  }
  return "";
}

namespace {

// Where the child failed, reported through the CLOEXEC error pipe.
enum ChildStage : int {
  kStageSignals = 1,
  kStageSession,
  kStageDeathSignal,
  kStageUnshare,
  kStageMountPrivate,
  kStageUmount,
  kStageFds,
  kStageChdir,
  kStageExec,
};

const char* StageName(int stage) {
  switch (stage) {
    case kStageSignals: return "reset signals";
    case kStageSession: return "setsid";
    case kStageDeathSignal: return "set parent death signal";
    case kStageUnshare: return "unshare(CLONE_NEWNS)";
    case kStageMountPrivate: return "make / private";
    case kStageUmount: return "detach mount";
    case kStageFds: return "set up fds";
    case kStageChdir: return "chdir";
    case kStageExec: return "exec";
  }
  return "spawn";
}

// Everything the child needs, prepared before fork: the child only makes system calls.
struct ChildPlan {
  const char* path = nullptr;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<int> targets;  // child fds
  std::vector<int> sources;  // parent fds
  int max_target = 2;
  int err_fd = -1;
  pid_t parent = 0;
  bool new_session = false;
  int death_signal = 0;
  std::vector<const char*> hide_mounts;
  const char* cwd = nullptr;
  int fallback_fd_limit = 1024;
};

[[noreturn]] void ChildFail(int err_fd, int stage, int err) {
  int msg[2] = {stage, err};
  [[maybe_unused]] ssize_t n = ::write(err_fd, msg, sizeof msg);
  ::_exit(127);
}

[[noreturn]] void ChildMain(const ChildPlan& p) {
  // Only async-signal-safe calls from here on: the parent may have other threads.
  int high = p.max_target + 1;
  int err_fd = ::fcntl(p.err_fd, F_DUPFD_CLOEXEC, high);
  if (err_fd < 0) ::_exit(127);

  // Ignored signals and the blocked mask survive exec; runc and the container must start clean.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  if (::sigprocmask(SIG_SETMASK, &empty, nullptr) != 0) ChildFail(err_fd, kStageSignals, errno);

  if (p.new_session && ::setsid() < 0) ChildFail(err_fd, kStageSession, errno);
  if (p.death_signal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, p.death_signal, 0, 0, 0) != 0) {
      ChildFail(err_fd, kStageDeathSignal, errno);
    }
    if (::getppid() != p.parent) ::_exit(127);  // the parent died before prctl took effect
  }

  if (!p.hide_mounts.empty()) {
    if (::unshare(CLONE_NEWNS) != 0) ChildFail(err_fd, kStageUnshare, errno);
    // Nothing done in this namespace may propagate back to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      ChildFail(err_fd, kStageMountPrivate, errno);
    }
    for (const char* m : p.hide_mounts) {
      if (::umount2(m, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
        ChildFail(err_fd, kStageUmount, errno);
      }
    }
  }

  // Move every source above the targets first, so a source numbered like another target is
  // not clobbered by an earlier dup2.
  int highs[64];
  size_t n = p.sources.size();
  for (size_t i = 0; i < n; ++i) {
    highs[i] = ::fcntl(p.sources[i], F_DUPFD_CLOEXEC, high);
    if (highs[i] < 0) ChildFail(err_fd, kStageFds, errno);
  }
  for (size_t i = 0; i < n; ++i) {
    if (::dup2(highs[i], p.targets[i]) < 0) ChildFail(err_fd, kStageFds, errno);
  }
  for (int fd = 0; fd <= p.max_target; ++fd) {
    bool wanted = false;
    for (size_t i = 0; i < n; ++i) wanted |= p.targets[i] == fd;
    if (!wanted) ::close(fd);
  }
  // Whatever else is open — including fds some library opened without O_CLOEXEC — dies at exec.
  if (::syscall(SYS_close_range, static_cast<unsigned>(high), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = high; fd < p.fallback_fd_limit; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  if (p.cwd && ::chdir(p.cwd) != 0) ChildFail(err_fd, kStageChdir, errno);
  ::execve(p.path, p.argv.data(), p.envp.data());
  ChildFail(err_fd, kStageExec, errno);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reaper

namespace {
// Two reapers would each waitpid(-1) and steal the other's exits.
std::atomic<bool> g_reaper_exists{false};
}  // namespace

Result<std::unique_ptr<Reaper>> Reaper::Create(EventLoop* loop) {
  if (g_reaper_exists.exchange(true)) {
    return std::unexpected(FailedPrecondition("a Reaper already exists in this process"));
  }
  auto release = [](bool* ok) {
    if (!*ok) g_reaper_exists = false;
  };
  bool ok = false;
  std::unique_ptr<bool, decltype(release)> guard(&ok, release);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return std::unexpected(StatusFromErrno(errno, "prctl(PR_SET_CHILD_SUBREAPER)"));
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) {
    return std::unexpected(Internal("block SIGCHLD"));
  }
  std::unique_ptr<Reaper> r(new Reaper(loop));
  r->sigfd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!r->sigfd_.valid()) return std::unexpected(StatusFromErrno(errno, "signalfd(SIGCHLD)"));
  r->timerfd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!r->timerfd_.valid()) return std::unexpected(StatusFromErrno(errno, "timerfd_create"));
  Status st;
  Reaper* self = r.get();
  loop->RunSync([&] {
    auto sig = loop->Add(self->sigfd_.get(), EPOLLIN, [self](uint32_t) {
      signalfd_siginfo info[16];
      while (::read(self->sigfd_.get(), info, sizeof info) > 0) {
      }
      self->Reap();
    });
    if (!sig) {
      st = sig.error();
      return;
    }
    self->sig_handler_ = *sig;
    auto timer = loop->Add(self->timerfd_.get(), EPOLLIN, [self](uint32_t) {
      uint64_t ticks;
      [[maybe_unused]] ssize_t n = ::read(self->timerfd_.get(), &ticks, sizeof ticks);
      self->Reap();
    });
    if (!timer) {
      st = timer.error();
      return;
    }
    self->timer_handler_ = *timer;
    // Children that exited before the signalfd existed.
    self->Reap();
  });
  RETURN_IF_ERROR(st);
  ok = true;
  return r;
}

Reaper::~Reaper() {
  loop_->RunSync([this] {
    if (sig_handler_) loop_->Remove(sig_handler_);
    if (timer_handler_) loop_->Remove(timer_handler_);
  });
  g_reaper_exists = false;
}

void Reaper::UpdateSweepTimer() {
  itimerspec spec{};
  if (!spawned_.empty() || !watched_.empty()) {
    spec.it_value.tv_sec = 1;
    spec.it_interval.tv_sec = 1;
  }
  if (sweeping_ == (spec.it_value.tv_sec != 0)) return;
  sweeping_ = spec.it_value.tv_sec != 0;
  ::timerfd_settime(timerfd_.get(), 0, &spec, nullptr);
}

void Reaper::Reap() {
  std::vector<std::pair<std::shared_ptr<ExitWaiter>, Exit>> complete;
  std::vector<Exit> broadcast;
  std::vector<Subscriber> subscribers;
  {
    std::lock_guard lock(mu_);
    for (;;) {
      int ws = 0;
      pid_t pid = ::waitpid(-1, &ws, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      if (pid <= 0) break;
      Exit e{pid, ExitStatusFromWaitStatus(ws), std::chrono::system_clock::now()};
      if (auto it = spawned_.find(pid); it != spawned_.end()) {
        complete.emplace_back(std::move(it->second), e);
        spawned_.erase(it);
        continue;
      }
      broadcast.push_back(e);
      if (auto it = watched_.find(pid); it != watched_.end()) {
        complete.emplace_back(std::move(it->second), e);
        watched_.erase(it);
        continue;
      }
      // Keep it for a Watch() that has not happened yet (pid file not read yet).
      constexpr size_t kMaxUnclaimed = 1024;
      if (unclaimed_.insert_or_assign(pid, e).second) unclaimed_order_.push_back(pid);
      while (unclaimed_order_.size() > kMaxUnclaimed) {
        unclaimed_.erase(unclaimed_order_.front());
        unclaimed_order_.pop_front();
      }
    }
    if (!broadcast.empty()) {
      for (auto& [id, fn] : subscribers_) subscribers.push_back(fn);
    }
    UpdateSweepTimer();
  }
  for (auto& [waiter, e] : complete) waiter->Complete(e);
  for (const Exit& e : broadcast) {
    for (auto& fn : subscribers) fn(e);
  }
}

void Reaper::ReapNow() {
  loop_->Post([this] { Reap(); });
}

std::shared_ptr<ExitWaiter> Reaper::Watch(pid_t pid) {
  std::lock_guard lock(mu_);
  if (auto it = watched_.find(pid); it != watched_.end()) return it->second;
  auto waiter = std::make_shared<ExitWaiter>(pid, loop_);
  if (auto it = unclaimed_.find(pid); it != unclaimed_.end()) {
    waiter->Complete(it->second);
    unclaimed_.erase(it);
    unclaimed_order_.erase(std::find(unclaimed_order_.begin(), unclaimed_order_.end(), pid));
    return waiter;
  }
  watched_.emplace(pid, waiter);
  UpdateSweepTimer();
  return waiter;
}

void Reaper::Unwatch(pid_t pid) {
  std::lock_guard lock(mu_);
  watched_.erase(pid);
  UpdateSweepTimer();
}

uint64_t Reaper::Subscribe(Subscriber fn) {
  std::lock_guard lock(mu_);
  uint64_t id = next_subscriber_++;
  subscribers_.emplace(id, std::move(fn));
  return id;
}

void Reaper::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

Result<Spawned> Reaper::Spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) return std::unexpected(InvalidArgument("spawn: empty argv"));
  if (loop_->InLoopThread()) {
    return std::unexpected(Internal("spawn called on the event loop thread"));
  }
  std::string path = LookPath(spec.argv[0]);
  if (path.empty()) {
    return std::unexpected(NotFound("executable " + spec.argv[0] + " not found"));
  }

  ChildPlan plan;
  plan.path = path.c_str();
  std::vector<std::string> argv = spec.argv;
  for (auto& a : argv) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);

  std::vector<std::string> env;
  if (spec.inherit_env) {
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  }
  for (const std::string& kv : spec.env) {
    std::string key = kv.substr(0, kv.find('='));
    std::erase_if(env, [&](const std::string& e) { return e.substr(0, e.find('=')) == key; });
    env.push_back(kv);
  }
  for (auto& e : env) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);

  UniqueFd devnull;
  auto has_target = [&](int fd) {
    return std::any_of(spec.fds.begin(), spec.fds.end(), [&](auto& p) { return p.first == fd; });
  };
  for (auto& [target, source] : spec.fds) {
    if (target < 0 || source < 0) return std::unexpected(InvalidArgument("spawn: bad fd mapping"));
    plan.targets.push_back(target);
    plan.sources.push_back(source);
    plan.max_target = std::max(plan.max_target, target);
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (has_target(fd)) continue;
    if (!devnull.valid()) {
      devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!devnull.valid()) return std::unexpected(StatusFromErrno(errno, "open /dev/null"));
    }
    plan.targets.push_back(fd);
    plan.sources.push_back(devnull.get());
  }
  if (plan.sources.size() > 64 || plan.max_target > 1024) {
    return std::unexpected(InvalidArgument("spawn: too many fds"));
  }
  std::vector<std::string> hide = spec.hide_mounts;
  for (auto& m : hide) plan.hide_mounts.push_back(m.c_str());
  if (!spec.cwd.empty()) plan.cwd = spec.cwd.c_str();
  plan.new_session = spec.new_session;
  plan.death_signal = spec.parent_death_signal;
  plan.parent = ::getpid();
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    plan.fallback_fd_limit = static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20));
  }

  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) return std::unexpected(StatusFromErrno(errno, "pipe2"));
  UniqueFd err_r(errpipe[0]), err_w(errpipe[1]);
  plan.err_fd = err_w.get();

  auto waiter = std::shared_ptr<ExitWaiter>();
  pid_t pid;
  {
    // Held until the pid is registered: the reap loop cannot take this exit for anyone else.
    std::lock_guard lock(mu_);
    pid = ::fork();
    if (pid == 0) ChildMain(plan);
    if (pid < 0) return std::unexpected(StatusFromErrno(errno, "fork"));
    waiter = std::make_shared<ExitWaiter>(pid, loop_);
    spawned_.emplace(pid, waiter);
    UpdateSweepTimer();
  }
  err_w.reset();
  int msg[2];
  ssize_t n;
  do {
    n = ::read(err_r.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof msg)) {
    // The child exits 127; the reaper completes the waiter nobody holds any more.
    std::string what = "spawn " + spec.argv[0] + ": " + StageName(msg[0]);
    Status st = StatusFromErrno(msg[1], what);
    if (msg[0] == kStageUnshare || msg[0] == kStageMountPrivate || msg[0] == kStageUmount) {
      st = FailedPrecondition(st.message());
    }
    return std::unexpected(std::move(st));
  }
  return Spawned{pid, std::move(waiter)};
}

// ---------------------------------------------------------------------------------------------
// RunCommand

namespace {

// Reads what is available; returns false at EOF or on a hard error.
bool ReadAvailable(int fd, std::string& out, size_t max) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      size_t keep = std::min(static_cast<size_t>(n), max - std::min(max, out.size()));
      out.append(buf, keep);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;
  }
}

}  // namespace

Result<CommandResult> RunCommand(Reaper& reaper, const CommandOptions& options) {
  SpawnSpec spec = options.spec;
  auto set_fd = [&](int target, int source) {
    std::erase_if(spec.fds, [&](auto& p) { return p.first == target; });
    spec.fds.emplace_back(target, source);
  };
  UniqueFd out_r, out_w, err_r, err_w, in_fd;
  auto make_pipe = [](UniqueFd& r, UniqueFd& w) -> Status {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return StatusFromErrno(errno, "pipe2");
    r.reset(p[0]);
    w.reset(p[1]);
    if (::fcntl(r.get(), F_SETFL, O_NONBLOCK) != 0) return StatusFromErrno(errno, "fcntl");
    return Status::Ok();
  };
  if (options.capture_stdout) {
    RETURN_IF_ERROR(make_pipe(out_r, out_w));
    set_fd(1, out_w.get());
  }
  if (options.capture_stderr) {
    RETURN_IF_ERROR(make_pipe(err_r, err_w));
    set_fd(2, err_w.get());
  }
  if (options.stdin_data) {
    in_fd.reset(::memfd_create("stdin", MFD_CLOEXEC));
    if (!in_fd.valid()) return std::unexpected(StatusFromErrno(errno, "memfd_create"));
    std::string_view data = *options.stdin_data;
    while (!data.empty()) {
      ssize_t n = ::write(in_fd.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return std::unexpected(StatusFromErrno(errno, "write stdin memfd"));
      data.remove_prefix(static_cast<size_t>(n));
    }
    ::lseek(in_fd.get(), 0, SEEK_SET);
    set_fd(0, in_fd.get());
  }

  ASSIGN_OR_RETURN(Spawned child, reaper.Spawn(spec));
  out_w.reset();
  err_w.reset();
  in_fd.reset();

  auto wake = std::make_shared<UniqueFd>(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake->valid()) {
    ::kill(child.pid, SIGKILL);
    return std::unexpected(StatusFromErrno(errno, "eventfd"));
  }
  child.exit->OnExit([wake](const Exit&) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake->get(), &one, sizeof one);
  });

  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  bool out_open = out_r.valid(), err_open = err_r.valid();
  for (;;) {
    if (auto e = child.exit->TryGet()) {
      // The writer is gone: what it wrote is in the pipe now. Do not wait for EOF — a
      // grandchild (the container) may hold the pipe for its whole life.
      if (out_open) ReadAvailable(out_r.get(), result.out, options.max_output);
      if (err_open) ReadAvailable(err_r.get(), result.err, options.max_output);
      result.exit = *e;
      return result;
    }
    pollfd pfds[3];
    nfds_t n = 0;
    pfds[n++] = {wake->get(), POLLIN, 0};
    int out_idx = -1, err_idx = -1;
    if (out_open) {
      out_idx = static_cast<int>(n);
      pfds[n++] = {out_r.get(), POLLIN, 0};
    }
    if (err_open) {
      err_idx = static_cast<int>(n);
      pfds[n++] = {err_r.get(), POLLIN, 0};
    }
    int wait_ms = 1000;
    if (options.timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
    }
    int rc = ::poll(pfds, n, wait_ms);
    if (rc < 0 && errno != EINTR) return std::unexpected(StatusFromErrno(errno, "poll"));
    if (rc == 0) {
      reaper.ReapNow();  // in case a SIGCHLD was lost
      if (options.timeout.count() > 0 && std::chrono::steady_clock::now() >= deadline) {
        ::kill(child.pid, SIGKILL);
        child.exit->WaitFor(std::chrono::seconds(10));
        return std::unexpected(Status(Code::kDeadlineExceeded,
                                      spec.argv[0] + " did not finish within " +
                                          std::to_string(options.timeout.count()) + " ms; killed"));
      }
      continue;
    }
    if (out_idx >= 0 && pfds[out_idx].revents) {
      out_open = ReadAvailable(out_r.get(), result.out, options.max_output);
    }
    if (err_idx >= 0 && pfds[err_idx].revents) {
      err_open = ReadAvailable(err_r.get(), result.err, options.max_output);
    }
  }
}

}  // namespace berth::oci
