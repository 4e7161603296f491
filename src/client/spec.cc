#include "client/spec.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>

namespace berth::client {
namespace {

using nlohmann::json;

constexpr char kSpecVersion[] = "1.0.2-dev";  // what containerd 1.6 writes

const std::vector<std::string>& DefaultCaps() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return caps;
}

// The capabilities this process has (CapEff), as containerd's WithAllCurrentCapabilities: a
// runtime cannot grant what its caller lacks.
std::vector<std::string> AllCaps() {
  static const char* const kNames[] = {"CAP_CHOWN",
                                       "CAP_DAC_OVERRIDE",
                                       "CAP_DAC_READ_SEARCH",
                                       "CAP_FOWNER",
                                       "CAP_FSETID",
                                       "CAP_KILL",
                                       "CAP_SETGID",
                                       "CAP_SETUID",
                                       "CAP_SETPCAP",
                                       "CAP_LINUX_IMMUTABLE",
                                       "CAP_NET_BIND_SERVICE",
                                       "CAP_NET_BROADCAST",
                                       "CAP_NET_ADMIN",
                                       "CAP_NET_RAW",
                                       "CAP_IPC_LOCK",
                                       "CAP_IPC_OWNER",
                                       "CAP_SYS_MODULE",
                                       "CAP_SYS_RAWIO",
                                       "CAP_SYS_CHROOT",
                                       "CAP_SYS_PTRACE",
                                       "CAP_SYS_PACCT",
                                       "CAP_SYS_ADMIN",
                                       "CAP_SYS_BOOT",
                                       "CAP_SYS_NICE",
                                       "CAP_SYS_RESOURCE",
                                       "CAP_SYS_TIME",
                                       "CAP_SYS_TTY_CONFIG",
                                       "CAP_MKNOD",
                                       "CAP_LEASE",
                                       "CAP_AUDIT_WRITE",
                                       "CAP_AUDIT_CONTROL",
                                       "CAP_SETFCAP",
                                       "CAP_MAC_OVERRIDE",
                                       "CAP_MAC_ADMIN",
                                       "CAP_SYSLOG",
                                       "CAP_WAKE_ALARM",
                                       "CAP_BLOCK_SUSPEND",
                                       "CAP_AUDIT_READ",
                                       "CAP_PERFMON",
                                       "CAP_BPF",
                                       "CAP_CHECKPOINT_RESTORE"};
  uint64_t eff = 0;
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("CapEff:")) {
      eff = std::strtoull(line.c_str() + 7, nullptr, 16);
      break;
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if (eff & (uint64_t{1} << i)) out.push_back(kNames[i]);
  }
  return out;
}

json DefaultMounts() {
  auto m = [](const char* dst, const char* type, const char* src,
              std::vector<std::string> options) {
    return json{{"destination", dst}, {"type", type}, {"source", src}, {"options", options}};
  };
  return json::array({
      m("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      m("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      m("/dev/pts", "devpts", "devpts",
        {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      m("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
      m("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      m("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
      m("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}),
      m("/run", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
  });
}

// containerd's WithDefaultUnixDevices, after the default deny-all rule.
json DefaultDevices() {
  json out = json::array({{{"allow", false}, {"access", "rwm"}}});
  const std::pair<int, int> kChar[] = {{1, 3}, {1, 8}, {1, 7},    {5, 0}, {1, 5},
                                       {1, 9}, {5, 1}, {136, -1}, {5, 2}};
  for (auto [major, minor] : kChar) {
    json d = {{"allow", true}, {"type", "c"}, {"major", major}, {"access", "rwm"}};
    if (minor >= 0) d["minor"] = minor;
    out.push_back(std::move(d));
  }
  return out;
}

json BaseSpec(const SpecOptions& o) {
  json caps = DefaultCaps();
  json ns = json::array();
  for (const char* t : {"pid", "ipc", "uts", "mount", "network"}) ns.push_back({{"type", t}});
  return {
      {"ociVersion", kSpecVersion},
      {"process",
       {{"user", {{"uid", 0}, {"gid", 0}}},
        {"cwd", "/"},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
        {"noNewPrivileges", true}}},
      {"root", {{"path", o.rootfs_path.empty() ? "rootfs" : o.rootfs_path}}},
      {"mounts", DefaultMounts()},
      {"linux",
       {{"resources", {{"devices", DefaultDevices()}}},
        {"cgroupsPath", "/" + o.ns + "/" + o.id},
        {"namespaces", ns},
        {"maskedPaths",
         {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
          "/proc/scsi"}},
        {"readonlyPaths",
         {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}},
  };
}

std::vector<std::string> Strings(const json& obj, const char* key) {
  std::vector<std::string> out;
  if (!obj.is_object()) return out;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

std::vector<std::string> MergeEnv(const std::vector<std::string>& defaults,
                                  const std::vector<std::string>& overrides) {
  std::vector<std::string> out;
  std::map<std::string, size_t> index;
  for (const auto& e : defaults) {
    index[e.substr(0, e.find('='))] = out.size();
    out.push_back(e);
  }
  std::vector<bool> removed(out.size(), false);
  for (const auto& e : overrides) {
    size_t eq = e.find('=');
    if (eq == std::string::npos) {
      if (auto it = index.find(e); it != index.end()) removed[it->second] = true;
      continue;
    }
    if (auto it = index.find(e.substr(0, eq)); it != index.end()) {
      out[it->second] = e;
      removed[it->second] = false;
    } else {
      index[e.substr(0, eq)] = out.size();
      out.push_back(e);
      removed.push_back(false);
    }
  }
  std::vector<std::string> kept;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!removed[i]) kept.push_back(std::move(out[i]));
  }
  return kept;
}

Result<json> ParseMountFlag(std::string_view flag) {
  json m = json::object();
  size_t start = 0;
  while (start <= flag.size()) {
    size_t end = flag.find(',', start);
    if (end == std::string_view::npos) end = flag.size();
    std::string_view field = flag.substr(start, end - start);
    start = end + 1;
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return Err(Code::kInvalidArgument,
                 "invalid mount " + Quote(flag) + ": expected key=val fields");
    }
    std::string_view key = field.substr(0, eq);
    std::string val(field.substr(eq + 1));
    if (key == "type") {
      m["type"] = val;
    } else if (key == "source" || key == "src") {
      m["source"] = val;
    } else if (key == "destination" || key == "dst") {
      m["destination"] = val;
    } else if (key == "options") {
      std::vector<std::string> opts;
      size_t s = 0;
      while (s <= val.size()) {
        size_t e = val.find(':', s);
        if (e == std::string::npos) e = val.size();
        opts.push_back(val.substr(s, e - s));
        s = e + 1;
      }
      m["options"] = opts;
    } else {
      return Err(Code::kInvalidArgument, "mount option " + Quote(key) + " not supported");
    }
  }
  if (!m.contains("destination") || m["destination"].get<std::string>().empty()) {
    return Err(Code::kInvalidArgument, "mount " + Quote(flag) + " has no destination (dst=)");
  }
  return m;
}

Result<json> GenerateSpec(const SpecOptions& o) {
  json spec = BaseSpec(o);
  json& proc = spec["process"];
  std::vector<std::string> env = MergeEnv({}, o.env);
  for (const auto& m : o.mounts) spec["mounts"].push_back(m);

  if (!o.image_config.is_null()) {
    const json& c = o.image_config;
    std::vector<std::string> defaults = Strings(c, "Env");
    if (defaults.empty()) defaults = {kDefaultPathEnv};
    env = MergeEnv(defaults, env);
    std::vector<std::string> args = Strings(c, "Entrypoint");
    for (auto& a : Strings(c, "Cmd")) args.push_back(std::move(a));
    proc["args"] = args;
    std::string cwd = c.is_object() && c.contains("WorkingDir") && c["WorkingDir"].is_string()
                          ? c["WorkingDir"].get<std::string>()
                          : "";
    proc["cwd"] = cwd.empty() ? "/" : cwd;
    std::string user = c.is_object() && c.contains("User") && c["User"].is_string()
                           ? c["User"].get<std::string>()
                           : "";
    if (!user.empty()) {
      // An all-digit user or group is a number, never a name; out of range is an error
      // whatever resolver follows (CVE-2024-40635, user.h).
      ASSIGN_OR_RETURN(UserRef ref, ParseUser(user));
      if (o.resolve_user) {
        ASSIGN_OR_RETURN(UserIds ids, o.resolve_user(user));
        proc["user"] = {{"uid", ids.first}, {"gid", ids.second}};
      } else if (!ref.uid || (!ref.group.empty() && !ref.gid)) {
        return Err(Code::kInvalidArgument, "image user " + Quote(user) +
                                               ": only numeric uid[:gid] is supported here, "
                                               "not names");
      } else {
        proc["user"] = {{"uid", *ref.uid}, {"gid", ref.gid.value_or(0)}};
      }
    }
  }
  if (o.read_only) spec["root"]["readonly"] = true;
  if (!o.args.empty()) proc["args"] = o.args;
  if (!o.cwd.empty()) proc["cwd"] = o.cwd;
  if (o.tty) {
    proc["terminal"] = true;
    env.push_back("TERM=xterm");
  }
  if (o.privileged) {
    json caps = AllCaps();
    proc["capabilities"] = {{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
    spec["linux"].erase("maskedPaths");
    spec["linux"].erase("readonlyPaths");
    spec["linux"]["resources"]["devices"] = json::array({{{"allow", true}, {"access", "rwm"}}});
    for (auto& m : spec["mounts"]) {
      if (m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup") {
        std::vector<std::string> opts;
        for (const auto& opt : m["options"]) {
          if (opt != "ro") opts.push_back(opt.get<std::string>());
        }
        m["options"] = opts;
      }
    }
  }
  if (o.net_host) {
    auto& nss = spec["linux"]["namespaces"];
    for (auto it = nss.begin(); it != nss.end(); ++it) {
      if ((*it)["type"] == "network") {
        nss.erase(it);
        break;
      }
    }
    for (const char* f : {"/etc/hosts", "/etc/resolv.conf"}) {
      spec["mounts"].push_back(
          {{"destination", f}, {"type", "bind"}, {"source", f}, {"options", {"rbind", "ro"}}});
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) {
      env = MergeEnv(env, {std::string("HOSTNAME=") + host});
    }
  }
  if (!env.empty()) proc["env"] = env;
  if (!o.annotations.empty()) spec["annotations"] = o.annotations;
  if (!proc.contains("args") || proc["args"].empty()) {
    return Err(Code::kInvalidArgument,
               "no command to run: give one after the container ID (the image has no "
               "Entrypoint or Cmd)");
  }
  return spec;
}

}  // namespace berth::client
