// OciRuntime: the OCI runtime (runc, crun, or anything with runc's command line) as a C++
// interface. One call = one invocation of the runtime binary, as containerd's go-runc does.
//
// Vocabulary: a *container* is what the runtime knows by `id` under its `root` directory;
// its *init* process is created stopped (`create`) and released by `start`; more processes
// join it with `exec`. The runtime exits after each command — the container's processes are
// reparented to us (see reaper.h), so their exits come from the Reaper, not from here.
//
// Errors: the runtime is run with `--log <file> --log-format json` and, when a command fails,
// the last "error" entry it appended is the Status message — the text the runtime printed to
// stderr went to the container's stderr (create/exec) or is used when there is no log. Codes:
// NotFound for "container does not exist" (and, for Kill, "process already finished"),
// AlreadyExists for a taken id, DeadlineExceeded when a command outlives options.timeout,
// Unknown for every other runtime failure (containerd returns such errors uncoded).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "oci/cgroup.h"
#include "oci/reaper.h"

namespace berth::oci {

// `<runtime> state <id>`: the OCI state plus runc's extras.
struct ContainerState {
  std::string id;
  std::string status;  // "creating", "created", "running", "paused", "stopped"
  pid_t pid = 0;
  std::string bundle;
  std::string rootfs;
  std::string created;  // RFC 3339
  std::map<std::string, std::string> annotations;
  std::string raw_json;
};

// The stdio a create/exec invocation gets — and passes on to the container process.
// Borrowed fds; -1 = /dev/null.
struct RuntimeStdio {
  int in = -1;
  int out = -1;
  int err = -1;
};

struct CreateOptions {
  std::string bundle;          // absolute path of the bundle (config.json, rootfs)
  std::string pid_file;        // where the runtime writes the init pid; "" = none
  std::string console_socket;  // path of a ConsoleSocket for terminal mode; "" = no pty
  bool no_pivot = false;
  bool no_new_keyring = false;
  // The container's stdio. nullopt (terminal mode): the runtime's own output is captured and
  // used in error messages instead.
  std::optional<RuntimeStdio> stdio;
};

struct ExecOptions {
  std::string process_json;  // an OCI runtime-spec "process" object
  std::string pid_file;
  std::string console_socket;
  // With detach the runtime returns once the process runs (what the shim wants). Without it the
  // call lasts as long as the process and options.timeout does not apply.
  bool detach = true;
  std::optional<RuntimeStdio> stdio;
};

// The hybrid-cgroup workaround: run the runtime in a private mount namespace with the cgroup2
// mount detached (kAuto: for crun on a hybrid host whose cgroup2 mount holds controllers).
enum class HybridCgroupFix { kAuto, kOff, kOn };

struct RuntimeOptions {
  std::string binary = "runc";  // a name looked up in $PATH, or a path
  std::string root;             // --root; "" = the runtime's default (/run/runc, /run/crun)
  bool systemd_cgroup = false;  // --systemd-cgroup
  std::string log_path;         // --log + --log-format json; "" = no log file
  std::string temp_dir;         // for process.json/resources files; "" = $XDG_RUNTIME_DIR or /tmp
  HybridCgroupFix hybrid_fix = HybridCgroupFix::kAuto;
  // Per command. A hung runtime is killed rather than hanging the shim's RPC forever.
  std::chrono::milliseconds timeout = std::chrono::minutes(2);
  // containerd runs runc with Pdeathsig SIGKILL: a dying shim takes its runtime calls along.
  int parent_death_signal = SIGKILL;
  // Run `<binary> --version` in Create to learn name and version. false skips that runtime start
  // (the shim creates one CliRuntime per container, on the `ctr run` critical path): name is
  // then the binary's file name ("runc", "crun"), version stays empty.
  bool probe_version = true;
};

struct RuntimeInfo {
  std::string path;                   // resolved binary
  std::string name;                   // first word of `--version`: "runc", "crun", ...
  std::string version;                // e.g. "1.1.5+ds1"
  bool hides_unified_cgroup = false;  // the hybrid fix is active
};

// Thread-safe: calls for different containers may run concurrently.
class OciRuntime {
 public:
  virtual ~OciRuntime() = default;

  // `create --bundle B [--pid-file P] [--console-socket S] [--no-pivot] [--no-new-keyring] id`.
  virtual Status Create(const std::string& id, const CreateOptions& options) = 0;
  // `start id`: releases the init process.
  virtual Status Start(const std::string& id) = 0;
  virtual Result<ContainerState> State(const std::string& id) = 0;
  // `kill [--all] id signal`. NotFound when the container or its process is gone.
  virtual Status Kill(const std::string& id, int signal, bool all) = 0;
  // `delete [--force] id`.
  virtual Status Delete(const std::string& id, bool force) = 0;
  virtual Status Pause(const std::string& id) = 0;
  virtual Status Resume(const std::string& id) = 0;
  // `ps --format json id`: host pids of every process in the container.
  virtual Result<std::vector<pid_t>> Ps(const std::string& id) = 0;
  // `exec --process <file> [--detach] [--pid-file P] [--console-socket S] id`.
  virtual Status Exec(const std::string& id, const ExecOptions& options) = 0;
  // `update --resources <file> id` with an OCI LinuxResources JSON object.
  virtual Status Update(const std::string& id, const std::string& resources_json) = 0;
  // `events --stats id`: the runtime's own stats event (JSON). Unimplemented for runtimes
  // without it (crun); ReadCgroupStats() works for all.
  virtual Result<std::string> Stats(const std::string& id) = 0;

  virtual const RuntimeInfo& info() const = 0;
};

// Drives a runtime binary through its command line.
class CliRuntime final : public OciRuntime {
 public:
  // Resolves the binary and asks it for --version (to name it and to decide the hybrid fix).
  // Errors: NotFound (binary), FailedPrecondition (hybrid fix forced on a host without cgroup2).
  static Result<std::unique_ptr<CliRuntime>> Create(Reaper* reaper, RuntimeOptions options,
                                                    const CgroupLayout& layout);

  Status Create(const std::string& id, const CreateOptions& options) override;
  Status Start(const std::string& id) override;
  Result<ContainerState> State(const std::string& id) override;
  Status Kill(const std::string& id, int signal, bool all) override;
  Status Delete(const std::string& id, bool force) override;
  Status Pause(const std::string& id) override;
  Status Resume(const std::string& id) override;
  Result<std::vector<pid_t>> Ps(const std::string& id) override;
  Status Exec(const std::string& id, const ExecOptions& options) override;
  Status Update(const std::string& id, const std::string& resources_json) override;
  Result<std::string> Stats(const std::string& id) override;
  const RuntimeInfo& info() const override { return info_; }

 private:
  CliRuntime(Reaper* reaper, RuntimeOptions options) : reaper_(reaper), opts_(std::move(options)) {}

  struct Call {
    std::vector<std::string> args;  // after the global flags
    std::string cwd;
    std::optional<RuntimeStdio> stdio;  // nullopt = capture stdout and stderr
    bool timeout = true;
    // The command names an existing container (its id is the last argument unless
    // container_id says otherwise): "no such file" about its state then means NotFound.
    bool existing = true;
    std::string container_id;
  };
  // Runs one command. A non-zero exit becomes an error carrying the runtime's message.
  Result<CommandResult> Run(std::string_view op, const Call& call);
  Result<std::string> WriteTempFile(std::string_view prefix, std::string_view data);

  Reaper* const reaper_;
  const RuntimeOptions opts_;
  RuntimeInfo info_;
  std::vector<std::string> hide_mounts_;
};

// Extracts the message of the last "level":"error" entry from runtime JSON log lines.
std::string LastRuntimeError(std::string_view json_lines);

}  // namespace berth::oci
