#include "tasks/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fs.h"

extern char** environ;

namespace berth::tasks {
namespace {

struct Pipe {
  UniqueFd r, w;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::unexpected(StatusFromErrno(errno, "pipe"));
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

Result<CommandResult> RunCommand(const std::vector<std::string>& argv, const std::string& cwd,
                                 const std::vector<std::string>& extra_env,
                                 const std::string& stdin_data,
                                 std::chrono::milliseconds timeout) {
  ASSIGN_OR_RETURN(Pipe in, MakePipe());
  ASSIGN_OR_RETURN(Pipe out, MakePipe());
  ASSIGN_OR_RETURN(Pipe err, MakePipe());

  std::vector<std::string> env_strings;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    bool overridden = false;
    for (const auto& x : extra_env) {
      auto eq = x.find('=');
      if (kv.compare(0, eq + 1, x, 0, eq + 1) == 0) overridden = true;
    }
    if (!overridden) env_strings.push_back(std::move(kv));
  }
  for (const auto& x : extra_env) env_strings.push_back(x);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out.w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.w.get(), 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  // The daemon blocks SIGTERM/SIGINT (sigwait) and ignores SIGPIPE; shims must not inherit that.
  for (int s : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD, SIGHUP}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return std::unexpected(StatusFromErrno(rc, "exec " + argv[0]));
  in.r.reset();
  out.w.reset();
  err.w.reset();

  // Small payloads (runtime options): fits the pipe buffer.
  if (!stdin_data.empty()) {
    ssize_t n = ::write(in.w.get(), stdin_data.data(), stdin_data.size());
    (void)n;
  }
  in.w.reset();

  CommandResult res;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true, timed_out = false;
  char buf[4096];
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfds[2] = {{out_open ? out.r.get() : -1, POLLIN, 0},
                      {err_open ? err.r.get() : -1, POLLIN, 0}};
    int n = ::poll(pfds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (pfds[i].fd < 0 || pfds[i].revents == 0) continue;
      ssize_t got = ::read(pfds[i].fd, buf, sizeof buf);
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else {
        (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(got));
      }
    }
  }
  if (timed_out) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return std::unexpected(Status(Code::kDeadlineExceeded, argv[0] + " timed out"));
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

}  // namespace berth::tasks
