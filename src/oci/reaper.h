// Reaper: owns every child of the process, including the orphans it inherits as a subreaper.
//
// A shim is a child subreaper (PR_SET_CHILD_SUBREAPER) so container processes, whose parent
// (`runc create`, `runc exec --detach`) exits right after starting them, are reparented to it
// and their exit status comes back here. One waitpid(-1) loop, woken by a signalfd(SIGCHLD) on
// the EventLoop, reaps them all.
//
// The hazard is that runtime CLI invocations (`runc create`, `runc state`, the logging binary)
// are children too: a waitpid(-1) loop would steal their exits from whoever spawned them.
// containerd solves it with a "reaper monitor" that broadcasts every exit to every subscriber
// (sys/reaper). Ours is narrower: Spawn() forks with the reaper's lock held and registers the
// pid before the lock is released; the reap loop calls waitpid under the same lock, so an
// invocation's exit is always matched to its ExitWaiter and never seen by anyone else.
// Every other exit (container processes, their orphaned descendants) goes to subscribers and,
// if a Process has asked for that pid with Watch(), to its waiter. Such exits are also kept
// for a while, because a pid read from a pid file may belong to a process that is already gone.
//
// Process-wide setup, done by Create(): the subreaper bit, SIGCHLD blocked in the calling
// thread (threads it creates afterwards inherit that; the EventLoop thread blocks it itself).
// REQUIRES: any thread created before Create() blocks SIGCHLD itself — otherwise a SIGCHLD
// may be delivered to it and discarded. A 1 s sweep while anything is waited for bounds the
// damage of a lost signal to a delay, never a hang.
// One Reaper per process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "oci/event_loop.h"

namespace berth::oci {

// One reaped child. `status` is the exit code, or 128+signal when killed by a signal — the
// value containerd reports as exit_status (sys/reaper exitStatus).
struct Exit {
  pid_t pid = 0;
  int status = 0;
  std::chrono::system_clock::time_point time;
};

// WEXITSTATUS, or 128 + WTERMSIG for a signalled child.
int ExitStatusFromWaitStatus(int wait_status);

// The exit of one pid, delivered once. Shared between the reaper and whoever waits.
class ExitWaiter {
 public:
  explicit ExitWaiter(pid_t pid, EventLoop* loop) : pid_(pid), loop_(loop) {}

  pid_t pid() const { return pid_; }
  std::optional<Exit> TryGet() const;
  Exit Wait() const;
  // nullopt on timeout.
  std::optional<Exit> WaitFor(std::chrono::milliseconds timeout) const;
  // Runs `fn` on the loop thread once the exit is known (posted at once if it already is).
  void OnExit(std::function<void(const Exit&)> fn);

  // Called by the reaper (on the loop thread).
  void Complete(const Exit& exit);

 private:
  const pid_t pid_;
  EventLoop* const loop_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<Exit> exit_ GUARDED_BY(mu_);
  std::vector<std::function<void(const Exit&)>> callbacks_ GUARDED_BY(mu_);
};

// What a child gets. Nothing is inherited implicitly: fds not listed in `fds` are closed or
// CLOEXEC in the child whatever the parent's flags were (runc CVE-2024-21626 was a leaked fd),
// signal mask and dispositions are reset to defaults.
struct SpawnSpec {
  // argv[0] is the program: a path, or a name looked up in $PATH (in the parent, before fork).
  std::vector<std::string> argv;
  // "KEY=VALUE" entries. With inherit_env the caller's environment is used and `env` entries
  // are appended (a later entry wins for getenv in most programs; keep them distinct).
  std::vector<std::string> env;
  bool inherit_env = true;
  // child fd → parent fd (borrowed; stays open in the parent). 0, 1 and 2 not listed get
  // /dev/null.
  std::vector<std::pair<int, int>> fds;
  std::string cwd;
  bool new_session = false;
  // PR_SET_PDEATHSIG. Note the kernel sends it when the spawning *thread* exits.
  int parent_death_signal = 0;
  // Run in a private mount namespace with these mounts detached (hybrid-cgroup crun fix:
  // crun refuses a cgroup2 mount that holds controllers next to v1 hierarchies).
  std::vector<std::string> hide_mounts;
};

struct Spawned {
  pid_t pid = 0;
  std::shared_ptr<ExitWaiter> exit;
};

class Reaper {
 public:
  // Sets the subreaper bit, blocks SIGCHLD in the calling thread, opens the signalfd on `loop`.
  // `loop` must outlive the Reaper.
  static Result<std::unique_ptr<Reaper>> Create(EventLoop* loop);
  ~Reaper();

  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Starts a child. Its exit is delivered only to the returned waiter, never to subscribers.
  // Errors: NotFound (program), FailedPrecondition (hide_mounts could not be applied), and the
  // errno class of the failing step otherwise. Thread-safe; not on the loop thread.
  Result<Spawned> Spawn(const SpawnSpec& spec);

  // Asks for the exit of `pid`, a child not started by Spawn (a container process learned from
  // a pid file). If it was reaped already and not claimed since, the waiter is complete at once.
  std::shared_ptr<ExitWaiter> Watch(pid_t pid);
  // Drops interest in `pid` (its exit will only go to subscribers).
  void Unwatch(pid_t pid);

  // Every exit not produced by Spawn() is passed to each subscriber, on the loop thread.
  using Subscriber = std::function<void(const Exit&)>;
  uint64_t Subscribe(Subscriber fn);
  void Unsubscribe(uint64_t id);

  // Reaps now, in case a SIGCHLD was lost. Thread-safe.
  void ReapNow();

  EventLoop* loop() const { return loop_; }

 private:
  explicit Reaper(EventLoop* loop) : loop_(loop) {}
  void Reap();              // on the loop thread
  void UpdateSweepTimer();  // REQUIRES: mu_ held

  EventLoop* const loop_;
  UniqueFd sigfd_;
  UniqueFd timerfd_;
  EventLoop::HandlerId sig_handler_ = 0;
  EventLoop::HandlerId timer_handler_ = 0;

  std::mutex mu_;  // held around fork+register and around waitpid
  std::unordered_map<pid_t, std::shared_ptr<ExitWaiter>> spawned_ GUARDED_BY(mu_);
  std::unordered_map<pid_t, std::shared_ptr<ExitWaiter>> watched_ GUARDED_BY(mu_);
  std::unordered_map<pid_t, Exit> unclaimed_ GUARDED_BY(mu_);
  std::deque<pid_t> unclaimed_order_ GUARDED_BY(mu_);
  bool sweeping_ GUARDED_BY(mu_) = false;
  std::map<uint64_t, Subscriber> subscribers_ GUARDED_BY(mu_);
  uint64_t next_subscriber_ GUARDED_BY(mu_) = 1;
};

// Running a program to completion and collecting its output: what every runtime CLI call is.
struct CommandOptions {
  SpawnSpec spec;  // fds 0/1/2 in spec.fds are overridden by capture/stdin_data below
  bool capture_stdout = true;
  bool capture_stderr = true;
  // If set, the child's stdin is a sealed in-memory file holding these bytes.
  std::optional<std::string> stdin_data;
  // 0 = no limit. On expiry the child is SIGKILLed and DeadlineExceeded returned.
  std::chrono::milliseconds timeout{0};
  size_t max_output = 4 << 20;  // per stream; the rest is drained and dropped
};

struct CommandResult {
  Exit exit;
  std::string out;
  std::string err;
};

// Spawns, reads captured output while waiting, returns once the child has exited. Output a
// surviving grandchild still writes after that is not waited for. A non-zero exit is not an
// error here. REQUIRES: not on the loop thread.
Result<CommandResult> RunCommand(Reaper& reaper, const CommandOptions& options);

// Resolves a program name the way execvp would, but in the parent: "" if not found.
std::string LookPath(const std::string& name);

}  // namespace berth::oci
