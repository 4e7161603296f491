#include "oci/oci_runtime.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace berth::oci {

namespace {

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

bool Contains(std::string_view haystack, std::string_view needle) {
  std::string h(haystack), n(needle);
  std::transform(h.begin(), h.end(), h.begin(), ::tolower);
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  return h.find(n) != std::string::npos;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// What the runtime appended to its log since `offset`.
std::string ReadLogFrom(const std::string& path, off_t offset) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = ::pread(fd.get(), buf, sizeof buf, offset)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    offset += n;
    if (out.size() > (4 << 20)) break;
  }
  return out;
}

// A temp file removed when it goes out of scope.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(TempFile&& o) noexcept : path_(std::exchange(o.path_, "")) {}
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Status StatusOf(const Result<CommandResult>& r) { return r ? Status() : r.error(); }

}  // namespace

std::string LastRuntimeError(std::string_view json_lines) {
  std::string msg;
  size_t start = 0;
  while (start < json_lines.size()) {
    size_t end = json_lines.find('\n', start);
    if (end == std::string_view::npos) end = json_lines.size();
    std::string_view line = json_lines.substr(start, end - start);
    start = end + 1;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    auto level = j.find("level");
    auto m = j.find("msg");
    if (level != j.end() && level->is_string() && *level == "error" && m != j.end() &&
        m->is_string()) {
      msg = Trim(m->get<std::string>());
    }
  }
  return msg;
}

Result<std::unique_ptr<CliRuntime>> CliRuntime::Create(Reaper* reaper, RuntimeOptions options,
                                                       const CgroupLayout& layout) {
  std::string path = LookPath(options.binary);
  if (path.empty()) {
    return std::unexpected(NotFound("OCI runtime binary " + options.binary + " not found"));
  }
  std::unique_ptr<CliRuntime> rt(new CliRuntime(reaper, std::move(options)));
  rt->info_.path = path;

  if (rt->opts_.probe_version) {
    CommandOptions version;
    version.spec.argv = {path, "--version"};
    version.spec.parent_death_signal = rt->opts_.parent_death_signal;
    version.timeout = std::chrono::seconds(30);
    ASSIGN_OR_RETURN(CommandResult r, RunCommand(*reaper, version));
    if (r.exit.status != 0) {
      return std::unexpected(FailedPrecondition(path + " --version failed: " + Trim(r.err)));
    }
    // "runc version 1.1.5+ds1" / "crun version 1.8.1"
    std::string first = r.out.substr(0, r.out.find('\n'));
    size_t sp = first.find(' ');
    rt->info_.name = first.substr(0, sp);
    if (auto v = first.find("version "); v != std::string::npos) {
      rt->info_.version = Trim(first.substr(v + 8));
    }
  } else {
    rt->info_.name = path.substr(path.rfind('/') + 1);
  }

  bool hide = false;
  switch (rt->opts_.hybrid_fix) {
    case HybridCgroupFix::kOff: break;
    case HybridCgroupFix::kOn:
      if (layout.mode != CgroupMode::kHybrid) {
        return std::unexpected(
            FailedPrecondition("hybrid cgroup fix requested but the host cgroup layout is " +
                               std::string(CgroupModeName(layout.mode))));
      }
      hide = true;
      break;
    case HybridCgroupFix::kAuto:
      hide = rt->info_.name == "crun" && layout.HybridWithUnifiedControllers();
      break;
  }
  if (hide) {
    rt->hide_mounts_.push_back(layout.unified_mountpoint);
    rt->info_.hides_unified_cgroup = true;
    std::string ctls;
    for (auto& c : layout.unified_controllers) ctls += (ctls.empty() ? "" : ",") + c;
    spdlog::debug(
        "runtime {}: hybrid cgroup host (cgroup2 at {} holds {}); running it in a "
        "private mount namespace without that mount",
        rt->info_.name, layout.unified_mountpoint, ctls.empty() ? "nothing" : ctls);
  }
  return rt;
}

Result<CommandResult> CliRuntime::Run(std::string_view op, const Call& call) {
  CommandOptions co;
  co.spec.argv.push_back(info_.path);
  if (!opts_.root.empty()) co.spec.argv.push_back("--root=" + opts_.root);
  if (!opts_.log_path.empty()) {
    co.spec.argv.push_back("--log=" + opts_.log_path);
    co.spec.argv.push_back("--log-format=json");
  }
  if (opts_.systemd_cgroup) co.spec.argv.push_back("--systemd-cgroup");
  co.spec.argv.insert(co.spec.argv.end(), call.args.begin(), call.args.end());
  co.spec.cwd = call.cwd;
  co.spec.parent_death_signal = opts_.parent_death_signal;
  co.spec.hide_mounts = hide_mounts_;
  if (call.stdio) {
    co.capture_stdout = co.capture_stderr = false;
    if (call.stdio->in >= 0) co.spec.fds.emplace_back(0, call.stdio->in);
    if (call.stdio->out >= 0) co.spec.fds.emplace_back(1, call.stdio->out);
    if (call.stdio->err >= 0) co.spec.fds.emplace_back(2, call.stdio->err);
  }
  if (call.timeout) co.timeout = opts_.timeout;

  off_t log_offset = opts_.log_path.empty() ? 0 : FileSize(opts_.log_path);
  auto r = RunCommand(*reaper_, co);
  if (!r) {
    Status st = r.error();
    if (st.code() == Code::kFailedPrecondition && info_.hides_unified_cgroup) {
      return std::unexpected(FailedPrecondition(
          std::string(op) + ": " + info_.name +
          " cannot run on this hybrid cgroup host and hiding the cgroup2 mount failed (" +
          st.message() + ")"));
    }
    return std::unexpected(st.Wrap(std::string(op)));
  }
  if (r->exit.status == 0) return r;

  std::string msg;
  if (!opts_.log_path.empty()) msg = LastRuntimeError(ReadLogFrom(opts_.log_path, log_offset));
  if (msg.empty()) msg = Trim(r->err.empty() ? r->out : r->err);
  if (msg.empty()) msg = "exit status " + std::to_string(r->exit.status);
  Code code = Code::kUnknown;
  // runc says "container does not exist"; crun names the missing state file under its root.
  bool missing_state =
      call.existing && !call.args.empty() && Contains(msg, "no such file or directory") &&
      msg.find("/" + (call.container_id.empty() ? call.args.back() : call.container_id)) !=
          std::string::npos;
  if (Contains(msg, "does not exist") || missing_state) {
    code = Code::kNotFound;
  } else if (Contains(msg, "already exists") || Contains(msg, "id exists")) {
    code = Code::kAlreadyExists;
  }
  return std::unexpected(Status(code, std::string(op) + ": " + msg));
}

Result<std::string> CliRuntime::WriteTempFile(std::string_view prefix, std::string_view data) {
  std::string dir = opts_.temp_dir;
  if (dir.empty()) {
    const char* xdg = ::getenv("XDG_RUNTIME_DIR");
    dir = xdg && *xdg ? xdg : "/tmp";
  }
  std::string tmpl = dir + "/" + std::string(prefix) + "-XXXXXX";
  UniqueFd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "create temp file in " + dir));
  while (!data.empty()) {
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = StatusFromErrno(errno, "write " + tmpl);
      ::unlink(tmpl.c_str());
      return std::unexpected(st);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return tmpl;
}

Status CliRuntime::Create(const std::string& id, const CreateOptions& o) {
  Call c;
  c.args = {"create", "--bundle=" + o.bundle};
  if (!o.pid_file.empty()) c.args.push_back("--pid-file=" + o.pid_file);
  if (!o.console_socket.empty()) c.args.push_back("--console-socket=" + o.console_socket);
  if (o.no_pivot) c.args.push_back("--no-pivot");
  if (o.no_new_keyring) c.args.push_back("--no-new-keyring");
  c.args.push_back(id);
  c.cwd = o.bundle;
  c.stdio = o.stdio;
  c.existing = false;
  return StatusOf(Run("OCI runtime create failed", c));
}

Status CliRuntime::Start(const std::string& id) {
  return StatusOf(Run("OCI runtime start failed", {{"start", id}}));
}

Result<ContainerState> CliRuntime::State(const std::string& id) {
  ASSIGN_OR_RETURN(CommandResult r, Run("OCI runtime state failed", {{"state", id}}));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (!j.is_object()) {
    return std::unexpected(Internal("OCI runtime state: unparsable output: " + Trim(r.out)));
  }
  ContainerState s;
  s.raw_json = Trim(r.out);
  try {  // value() throws on a field of the wrong type
    s.id = j.value("id", "");
    s.status = j.value("status", "");
    s.pid = j.value("pid", 0);
    s.bundle = j.value("bundle", "");
    s.rootfs = j.value("rootfs", "");
    s.created = j.value("created", "");
  } catch (const nlohmann::json::exception& e) {
    return std::unexpected(Internal("OCI runtime state: unexpected output: " + s.raw_json));
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (auto& [k, v] : a->items()) {
      if (v.is_string()) s.annotations[k] = v.get<std::string>();
    }
  }
  return s;
}

Status CliRuntime::Kill(const std::string& id, int signal, bool all) {
  Call c;
  c.args = {"kill"};
  if (all) c.args.push_back("--all");
  c.args.push_back(id);
  c.args.push_back(std::to_string(signal));
  c.container_id = id;
  auto r = Run("OCI runtime kill failed", c);
  if (r) return Status::Ok();
  // What containerd's checkKillError treats as "the process is already gone".
  const std::string& m = r.error().message();
  if (Contains(m, "not running") || Contains(m, "no such process") ||
      Contains(m, "process already finished")) {
    return NotFound("process already finished: " + m);
  }
  return r.error();
}

Status CliRuntime::Delete(const std::string& id, bool force) {
  Call c;
  c.args = {"delete"};
  if (force) c.args.push_back("--force");
  c.args.push_back(id);
  return StatusOf(Run("OCI runtime delete failed", c));
}

Status CliRuntime::Pause(const std::string& id) {
  return StatusOf(Run("OCI runtime pause failed", {{"pause", id}}));
}

Status CliRuntime::Resume(const std::string& id) {
  return StatusOf(Run("OCI runtime resume failed", {{"resume", id}}));
}

Result<std::vector<pid_t>> CliRuntime::Ps(const std::string& id) {
  ASSIGN_OR_RETURN(CommandResult r, Run("OCI runtime ps failed", {{"ps", "--format=json", id}}));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  std::vector<pid_t> pids;
  if (j.is_null() && Trim(r.out) == "null") return pids;
  if (!j.is_array()) {
    return std::unexpected(Internal("OCI runtime ps: unparsable output: " + Trim(r.out)));
  }
  for (auto& p : j) {
    if (p.is_number_integer()) pids.push_back(p.get<pid_t>());
  }
  return pids;
}

Status CliRuntime::Exec(const std::string& id, const ExecOptions& o) {
  ASSIGN_OR_RETURN(std::string path, WriteTempFile("process", o.process_json));
  TempFile file(path);
  Call c;
  c.args = {"exec", "--process=" + file.path()};
  if (!o.console_socket.empty()) c.args.push_back("--console-socket=" + o.console_socket);
  if (o.detach) c.args.push_back("--detach");
  if (!o.pid_file.empty()) c.args.push_back("--pid-file=" + o.pid_file);
  c.args.push_back(id);
  c.stdio = o.stdio;
  c.timeout = o.detach;
  c.existing = false;  // a missing file here is about the process, not the container
  return StatusOf(Run("OCI runtime exec failed", c));
}

Status CliRuntime::Update(const std::string& id, const std::string& resources_json) {
  auto j = nlohmann::json::parse(resources_json, nullptr, false);
  if (!j.is_object()) return InvalidArgument("update: resources must be a JSON object");
  ASSIGN_OR_RETURN(std::string path, WriteTempFile("resources", resources_json));
  TempFile file(path);
  return StatusOf(Run("OCI runtime update failed", {{"update", "--resources=" + file.path(), id}}));
}

Result<std::string> CliRuntime::Stats(const std::string& id) {
  if (info_.name == "crun") {
    return std::unexpected(Unimplemented("crun has no `events --stats`; read the cgroup"));
  }
  ASSIGN_OR_RETURN(CommandResult r, Run("OCI runtime events failed", {{"events", "--stats", id}}));
  std::string out = Trim(r.out);
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_object()) return std::unexpected(Internal("OCI runtime events: unparsable output"));
  return out;
}

}  // namespace berth::oci
