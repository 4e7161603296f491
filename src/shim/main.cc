// containerd-shim-berth-v2: containerd's runtime v2 shim for runtime io.containerd.berth.v2.
//
//   <shim> [flags] start    start (or reuse) the long-running shim server, print its address
//   <shim> [flags] delete   clean up after a dead shim: force-delete the container, unmount
//                           the rootfs, print a DeleteResponse
//   <shim> [flags]          the server: containerd.task.v2.Task on the listener at fd 3
// Flags (Go flag syntax, "-x v", "-x=v", "--x v"): -namespace -address -publish-binary -id
// -bundle -socket -debug -v. The contract is containerd-compat.md §7.3.
// Environment: BERTH_SHIM_RUN_DIR (absolute) holds the sockets (<dir>/s/) and the default
// runtime root (<dir>/runc); unset = /run/berth. TTRPC_ADDRESS: where events go.
#include <sys/mount.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/unix_socket.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "oci/cgroup.h"
#include "oci/container.h"
#include "common/mount.h"
#include "shim/options.h"
#include "shim/publisher.h"
#include "shim/sha256.h"
#include "shim/task_service.h"
#include "ttrpc/server.h"

namespace berth::shim {
namespace {

constexpr char kDefaultRunDir[] = "/run/berth";
constexpr char kRunDirEnv[] = "BERTH_SHIM_RUN_DIR";
constexpr char kVersion[] = "0.1.0";

// The directory holding the shim's sockets (`<dir>/s/`) and the default runtime root
// (`<dir>/runc`): $BERTH_SHIM_RUN_DIR (absolute; berthd sets it to its state dir, tests to a
// temp dir), else /run/berth. containerd and berthd pass their environment on to shims, and
// `start` passes it on to the server, so every command of one shim sees the same value.
Result<std::string> RunDir() {
  const char* env = std::getenv(kRunDirEnv);
  if (!env || !*env) return std::string(kDefaultRunDir);
  std::string dir = env;
  if (dir[0] != '/') {
    return std::unexpected(InvalidArgument(std::string(kRunDirEnv) + " must be absolute: " + dir));
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

struct Flags {
  std::string ns;
  std::string address;
  std::string publish_binary;
  std::string id;
  std::string bundle;
  std::string socket;
  int ready_fd = -1;  // internal: the server's "serving" note to `start` (see Start)
  bool debug = false;
  bool version = false;
  std::string action;  // "", "start", "delete"
};

Result<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() < 2 || a[0] != '-') {
      if (!f.action.empty()) return std::unexpected(InvalidArgument("unexpected argument " + a));
      f.action = a;
      continue;
    }
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "debug" || name == "v") {
      bool on = !value || *value == "true" || *value == "1";
      (name == "debug" ? f.debug : f.version) = on;
      continue;
    }
    std::string ready_fd;
    std::string* dst = name == "namespace"        ? &f.ns
                       : name == "address"        ? &f.address
                       : name == "publish-binary" ? &f.publish_binary
                       : name == "id"             ? &f.id
                       : name == "bundle"         ? &f.bundle
                       : name == "socket"         ? &f.socket
                       : name == "ready-fd"       ? &ready_fd
                                                  : nullptr;
    if (!dst) return std::unexpected(InvalidArgument("flag provided but not defined: -" + name));
    if (!value) {
      if (i + 1 >= argc) return std::unexpected(InvalidArgument("flag needs an argument: -" + name));
      value = argv[++i];
    }
    *dst = *value;
    if (dst == &ready_fd) f.ready_fd = std::atoi(ready_fd.c_str());
  }
  return f;
}

// The group a container's shim serves: one shim per pod for CRI (as the runc shim groups).
std::string GroupOf(const std::string& bundle, const std::string& id) {
  auto text = ReadFile(bundle + "/config.json", 64 << 20);
  if (!text) return id;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.contains("annotations") || !j["annotations"].is_object()) return id;
  for (const char* key : {"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"}) {
    auto it = j["annotations"].find(key);
    if (it != j["annotations"].end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  }
  return id;
}

bool CanConnect(const std::string& path) {
  auto ua = MakeUnixAddress(path);
  if (!ua) return false;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  return ::connect(fd.get(), ua->addr(), ua->len) == 0;
}

// Binds `path` whatever its length (common/unix_socket.h): the run dir may be a long state dir.
Result<UniqueFd> ListenUnix(const std::string& path) {
  ASSIGN_OR_RETURN(UnixAddress ua, MakeUnixAddress(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "socket"));
  if (::bind(fd.get(), ua.addr(), ua.len) != 0) {
    return std::unexpected(StatusFromErrno(errno, "bind " + path));
  }
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
    Status st = StatusFromErrno(errno, "listen " + path);
    ::unlink(path.c_str());
    return std::unexpected(st);
  }
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Prints to stderr (what containerd logs when a command fails).
void Fail(const std::string& msg) { std::fprintf(stderr, "%s\n", msg.c_str()); }

// The runc shim's AdjustOOMScore: the server gets its parent's (containerd's) oom_score_adj
// plus one, capped at 1000, so the OOM killer takes a shim before the daemon.
void AdjustOomScore(pid_t server) {
  auto parent = ReadFile("/proc/" + std::to_string(::getppid()) + "/oom_score_adj");
  if (!parent) return;
  int score = std::atoi(parent->c_str());
  score = score >= 1000 ? 1000 : score + 1;
  std::string path = "/proc/" + std::to_string(server) + "/oom_score_adj";
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::string v = std::to_string(score);
  if (::write(fd, v.data(), v.size()) < 0) {
    // Lowering below our own needs CAP_SYS_RESOURCE; the runc shim ignores that too.
  }
  ::close(fd);
}

// Options.shim_cgroup: moves the server into that cgroup (path relative to the cgroup root), as
// the runc shim does: cgroup2 → <unified>/<path>; v1 → every hierarchy holding <path>.
Status JoinShimCgroup(const std::string& cgroup, pid_t pid) {
  ASSIGN_OR_RETURN(oci::CgroupLayout layout, oci::ReadCgroupLayout());
  std::vector<std::string> dirs;
  if (layout.mode == oci::CgroupMode::kUnified) {
    dirs.push_back(layout.unified_mountpoint + "/" + cgroup);
  } else {
    for (const auto& h : layout.v1) dirs.push_back(h.mountpoint + "/" + cgroup);
  }
  std::string v = std::to_string(pid);
  int joined = 0;
  for (const auto& d : dirs) {
    struct stat st;
    if (::stat(d.c_str(), &st) != 0) continue;  // not in this hierarchy
    int fd = ::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return StatusFromErrno(errno, "join shim cgroup " + d);
    ssize_t n = ::write(fd, v.data(), v.size());
    int err = errno;
    ::close(fd);
    if (n < 0) return StatusFromErrno(err, "join shim cgroup " + d);
    ++joined;
  }
  if (joined == 0) return NotFound("shim cgroup " + cgroup + " does not exist");
  return Status();
}

// Waits for the server's one-byte "serving" note on `fd`. False if it exited first (EOF) or
// did not answer within 10 s.
bool WaitReady(int fd) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, 10000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    char c;
    ssize_t r = ::read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    return r == 1;
  }
}

// `start`: see the file comment and containerd-compat.md §7.3.
int Start(const Flags& f, char** argv) {
  char cwd[4096];
  if (!::getcwd(cwd, sizeof(cwd))) {
    Fail(std::string("getcwd: ") + std::strerror(errno));
    return 1;
  }
  std::string bundle = f.bundle.empty() ? cwd : f.bundle;
  auto run_dir = RunDir();
  if (!run_dir) {
    Fail(run_dir.error().ToString());
    return 1;
  }
  std::string group = GroupOf(bundle, f.id);
  std::string sock_dir = *run_dir + "/s";
  std::string sock = sock_dir + "/" + Sha256Hex(f.address + "/" + f.ns + "/" + group);
  std::string address = "unix://" + sock;

  // Runtime options on stdin (an Any), kept in options.json for the server's Create.
  RuncOptions opts;
  std::string in = ReadAll(0);
  if (!in.empty()) {
    google::protobuf::Any any;
    if (!any.ParseFromString(in)) {
      Fail("invalid runtime options on stdin");
      return 1;
    }
    auto o = DecodeOptions(any);
    if (!o) {
      Fail(o.error().ToString());
      return 1;
    }
    opts = *o;
    if (Status st = WriteFileReplace(bundle + "/options.json", OptionsToJson(opts), 0600);
        !st.ok()) {
      Fail(st.ToString());
      return 1;
    }
  }

  auto publish = [&]() -> int {
    if (Status st = WriteFileReplace(bundle + "/address", address, 0600); !st.ok()) {
      Fail(st.ToString());
      return 1;
    }
    std::fwrite(address.data(), 1, address.size(), stdout);
    std::fflush(stdout);
    return 0;
  };

  if (Status st = EnsureDir(*run_dir, 0711); !st.ok()) {
    Fail(st.ToString());
    return 1;
  }
  if (Status st = EnsureDir(sock_dir, 0700, true); !st.ok()) {
    Fail(st.ToString());
    return 1;
  }
  struct stat st_sock;
  if (::lstat(sock.c_str(), &st_sock) == 0) {
    if (CanConnect(sock)) return publish();  // a live shim serves this group already
    ::unlink(sock.c_str());                  // left behind by a dead shim
  }
  auto listener = ListenUnix(sock);
  if (!listener) {
    Fail(listener.error().ToString());
    return 1;
  }
  auto fail_unlink = [&](const std::string& msg) {
    Fail(msg);
    ::unlink(sock.c_str());
    return 1;
  };

  // The server writes one byte to fd 4 once it serves (or exits, closing it).
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return fail_unlink(std::string("pipe: ") + std::strerror(errno));
  UniqueFd ready_r(ready[0]), ready_w(ready[1]);

  // -socket: the server removes that path when it exits (getsockname would name the
  // /proc/self/fd route a long path was bound through).
  std::vector<std::string> args = {argv[0], "-namespace", f.ns, "-id", f.id, "-address", f.address,
                                   "-socket", sock, "-ready-fd", "4"};
  if (!f.publish_binary.empty()) {
    args.insert(args.end(), {"-publish-binary", f.publish_binary});
  }
  if (f.debug) args.push_back("-debug");
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return fail_unlink(std::string("readlink /proc/self/exe: ") + std::strerror(errno));
  self[n] = '\0';

  pid_t pid = ::fork();
  if (pid < 0) return fail_unlink(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setsid();
    int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    // fd 3 = the listener, fd 4 = the ready pipe; inheritable (dup2 clears FD_CLOEXEC, except
    // onto itself). fd 4 first, away from 3 and 4, so neither dup2 clobbers the other.
    int rw = ::fcntl(ready_w.get(), F_DUPFD_CLOEXEC, 5);
    int lf = ::fcntl(listener->get(), F_DUPFD_CLOEXEC, 5);
    if (rw < 0 || lf < 0 || ::dup2(lf, 3) < 0 || ::dup2(rw, 4) < 0) ::_exit(127);
    ::execv(self, cargs.data());
    ::_exit(127);
  }
  ready_w.reset();
  AdjustOomScore(pid);
  if (!opts.shim_cgroup.empty()) {
    if (Status st = JoinShimCgroup(opts.shim_cgroup, pid); !st.ok()) {
      ::kill(pid, SIGKILL);
      return fail_unlink(st.ToString());
    }
  }
  // The server is not our child to wait for (it is reparented when we exit), but containerd
  // must not get the address of a server that died on the way up.
  if (!WaitReady(ready_r.get())) {
    ::kill(pid, SIGKILL);
    return fail_unlink("shim server " + std::to_string(pid) + " did not come up");
  }
  return publish();
}

// `delete`: the daemon's cleanup after a shim went away.
int Delete(const Flags& f) {
  char cwd[4096];
  std::string bundle = f.bundle;
  if (bundle.empty() && ::getcwd(cwd, sizeof(cwd))) bundle = cwd;
  auto run_dir = RunDir();
  if (!run_dir) {
    Fail(run_dir.error().ToString());
    return 1;
  }
  RuncOptions opts;
  if (auto text = ReadFile(bundle + "/options.json")) {
    if (auto o = OptionsFromJson(*text)) opts = *o;
  }
  oci::RuntimeOptions ro;
  if (!opts.binary_name.empty()) ro.binary = opts.binary_name;
  ro.root = (opts.root.empty() ? *run_dir + "/runc" : opts.root) + "/" + f.ns;
  ro.systemd_cgroup = opts.systemd_cgroup;
  ro.probe_version = false;
  ro.timeout = std::chrono::seconds(10);
  // containerd runs `delete` after every shim exit, also after a clean Task.Delete: when the
  // runtime holds no state for the container (runc and crun keep <root>/<id>), there is
  // nothing to force-delete and no reason to start the runtime.
  struct stat st_state;
  bool has_state = ::stat((ro.root + "/" + f.id).c_str(), &st_state) == 0;
  if (has_state) {
    auto env = oci::RuntimeEnv::Create();
    if (!env) {
      Fail(env.error().ToString());
      return 1;
    }
    if (auto rt = oci::CliRuntime::Create((*env)->reaper(), ro, (*env)->cgroups())) {
      Status st = (*rt)->Delete(f.id, true);
      if (!st.ok() && st.code() != Code::kNotFound) {
        spdlog::warn("delete {}: {}", f.id, st.ToString());
      }
    }
  }
  if (Status st = UnmountAll(bundle + "/rootfs", MNT_DETACH); !st.ok()) {
    spdlog::warn("delete {}: {}", f.id, st.ToString());
  }
  containerd::task::v2::DeleteResponse resp;
  resp.set_exit_status(128 + SIGKILL);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  resp.mutable_exited_at()->set_seconds(ns / 1000000000);
  resp.mutable_exited_at()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  std::string out;
  resp.SerializeToString(&out);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

// The server: serves the listener on fd 3 until Shutdown.
int Serve(const Flags& f) {
  // First, before any thread: the one event loop (ttrpc and the OCI core share it, run by
  // this thread), subreaper, SIGCHLD handling.
  ::signal(SIGPIPE, SIG_IGN);
  // One malloc arena: the worker threads are short-lived and few; per-thread arenas would each
  // keep their own heap resident for the shim's lifetime.
  ::mallopt(M_ARENA_MAX, 1);
  auto run_dir = RunDir();
  if (!run_dir) {
    std::fprintf(stderr, "%s\n", run_dir.error().ToString().c_str());
    return 1;
  }
  auto loop = ttrpc::EventLoop::Create();
  if (!loop) {
    std::fprintf(stderr, "%s\n", loop.error().ToString().c_str());
    return 1;
  }
  auto env = oci::RuntimeEnv::Create(loop->get());
  if (!env) {
    std::fprintf(stderr, "%s\n", env.error().ToString().c_str());
    return 1;
  }
  // Log to the bundle's `log` FIFO, which the daemon reads (opened write-only, no O_CREAT).
  int log = ::open("log", O_WRONLY | O_CLOEXEC);
  if (log >= 0) {
    ::dup2(log, 2);
    ::close(log);
  }
  spdlog::set_default_logger(spdlog::stderr_logger_st("shim"));
  spdlog::set_level(f.debug ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_pattern("time=\"%Y-%m-%dT%H:%M:%S.%fZ\" level=%l msg=\"%v\"", spdlog::pattern_time_type::utc);

  std::string sock_path = f.socket;
  if (sock_path.empty()) {
    sockaddr_un sa{};
    socklen_t len = sizeof(sa);
    if (::getsockname(3, reinterpret_cast<sockaddr*>(&sa), &len) == 0 && sa.sun_path[0] != '\0') {
      sock_path = sa.sun_path;
    }
  }
  // The socket file goes with the server, however it ends.
  struct RemoveSocket {
    std::string path;
    ~RemoveSocket() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } remove_socket{sock_path};
  const char* ttrpc_addr = std::getenv("TTRPC_ADDRESS");
  {
    // Tearing down (killing containers left by Shutdown{now}, finishing worker jobs) runs
    // the OCI runtime, whose exits come through the loop: keep it running on a helper thread
    // (SIGCHLD blocked, inherited) until everything below is destroyed.
    struct TeardownLoop {
      ttrpc::EventLoop& loop;
      std::thread thread;
      ~TeardownLoop() {
        if (thread.joinable()) {
          loop.Stop();
          thread.join();
        }
      }
    } teardown{**loop, {}};
    ttrpc::Server server(**loop);
    Publisher publisher(**loop, ttrpc_addr ? ttrpc_addr : "", f.ns);
    TaskService service(env->get(), **loop, server, publisher,
                        ShimConfig{f.ns, f.id, *run_dir + "/runc"});
    if (Status st = service.Register(); !st.ok()) {
      spdlog::error("{}", st.ToString());
      return 1;
    }
    // Shutdown: stop serving, then exit as soon as the last events (/tasks/exit,
    // /tasks/delete) are delivered, or after 2 s.
    service.OnShutdown([&] {
      server.Shutdown(std::chrono::seconds(1), [&] {
        // Once: a second Stop would end the teardown thread's Run below.
        auto stop = [&, stopped = std::make_shared<bool>(false)] {
          if (!*stopped) (*loop)->Stop();
          *stopped = true;
        };
        (*loop)->AddTimer(ttrpc::Clock::now() + std::chrono::seconds(2), stop);
        publisher.WhenIdle(stop);
      });
    });
    if (Status st = server.Serve(UniqueFd(3)); !st.ok()) {
      spdlog::error("serve: {}", st.ToString());
      return 1;
    }
    if (f.ready_fd >= 0) {  // tell `start` we serve
      char c = 1;
      if (::write(f.ready_fd, &c, 1) != 1) spdlog::warn("ready note: {}", std::strerror(errno));
      ::close(f.ready_fd);
    }
    (*loop)->Run();
    teardown.thread = std::thread([&] { (*loop)->Run(); });
    server.Close();
  }
  return 0;
}

}  // namespace
}  // namespace berth::shim

int main(int argc, char** argv) {
  using namespace berth::shim;
  auto flags = ParseFlags(argc, argv);
  if (!flags) {
    std::fprintf(stderr, "%s\n", flags.error().ToString().c_str());
    return 2;
  }
  if (flags->version) {
    std::printf("containerd-shim-berth-v2:\n  Version: %s\n", kVersion);
    return 0;
  }
  if (flags->ns.empty()) {
    std::fprintf(stderr, "shim namespace cannot be empty\n");
    return 1;
  }
  if (flags->action == "start") return Start(*flags, argv);
  if (flags->action == "delete") return Delete(*flags);
  if (!flags->action.empty()) {
    std::fprintf(stderr, "unknown command %s\n", flags->action.c_str());
    return 1;
  }
  return Serve(*flags);
}
