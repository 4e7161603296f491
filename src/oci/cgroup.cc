#include "oci/cgroup.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <optional>
#include <set>

#include "common/log.h"

namespace berth::oci {

namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

std::vector<std::string_view> Fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool IsV1Controller(std::string_view opt) {
  static const std::set<std::string_view> kControllers = {
      "cpu",   "cpuacct",    "cpuset",   "memory",  "devices", "freezer", "net_cls",
      "blkio", "perf_event", "net_prio", "hugetlb", "pids",    "rdma",    "misc"};
  return kControllers.contains(opt) || opt.starts_with("name=");
}

// `path` as seen in /proc/<pid>/cgroup, made relative to the hierarchy's mount root.
std::string JoinCgroup(const std::string& mountpoint, const std::string& root,
                       std::string_view path) {
  std::string_view rel = path;
  if (root != "/" && rel.starts_with(root) &&
      (rel.size() == root.size() || rel[root.size()] == '/')) {
    rel.remove_prefix(root.size());
  }
  while (rel.starts_with('/')) rel.remove_prefix(1);
  if (rel.empty()) return mountpoint;
  return mountpoint + "/" + std::string(rel);
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  if (s == "max") return UINT64_MAX;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Missing or unreadable counters read as 0: kernels and controllers differ in what they offer.
uint64_t ReadU64(const std::string& dir, const char* file) {
  auto text = ReadFile(dir + "/" + file, 4096);
  if (!text) return 0;
  return ParseU64(*text).value_or(0);
}

std::map<std::string, uint64_t> ReadKeyed(const std::string& dir, const char* file) {
  auto text = ReadFile(dir + "/" + file, 1 << 20);
  if (!text) return {};
  return ParseFlatKeyed(*text);
}

uint64_t Get(const std::map<std::string, uint64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

std::string_view CgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kLegacy: return "legacy";
    case CgroupMode::kHybrid: return "hybrid";
    case CgroupMode::kUnified: return "unified";
  }
  return "unknown";
}

std::map<std::string, uint64_t> ParseFlatKeyed(std::string_view text) {
  std::map<std::string, uint64_t> out;
  for (std::string_view line : Split(text, '\n')) {
    auto f = Fields(line);
    if (f.size() != 2) continue;
    if (auto v = ParseU64(f[1])) out[std::string(f[0])] = *v;
  }
  return out;
}

Result<CgroupLayout> ParseCgroupLayout(std::string_view mountinfo) {
  CgroupLayout layout;
  std::set<std::string> seen_v1;
  for (std::string_view line : Split(mountinfo, '\n')) {
    auto f = Fields(line);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (dash == f.end() || f.end() - dash < 3 || dash - f.begin() < 6) continue;
    std::string_view fstype = dash[1];
    std::string root = Unescape(f[3]);
    std::string mountpoint = Unescape(f[4]);
    if (fstype == "cgroup2") {
      // Prefer the host's conventional location if cgroup2 is mounted more than once.
      bool better = layout.unified_mountpoint.empty() ||
                    (!layout.unified_mountpoint.starts_with("/sys/fs/cgroup") &&
                     mountpoint.starts_with("/sys/fs/cgroup"));
      if (better) {
        layout.unified_mountpoint = mountpoint;
        layout.unified_root = root;
      }
    } else if (fstype == "cgroup") {
      CgroupLayout::V1Hierarchy h{mountpoint, root, {}};
      for (std::string_view opt : Split(dash[3], ',')) {
        if (IsV1Controller(opt)) h.controllers.emplace_back(opt);
      }
      if (h.controllers.empty()) continue;
      std::string key;
      for (auto& c : h.controllers) key += c + ",";
      if (!seen_v1.insert(key).second) continue;  // a bind mount of a hierarchy we have
      layout.v1.push_back(std::move(h));
    }
  }
  if (layout.v1.empty() && layout.unified_mountpoint.empty()) {
    return std::unexpected(NotFound("no cgroup file system is mounted"));
  }
  if (layout.v1.empty()) {
    layout.mode = CgroupMode::kUnified;
  } else if (layout.unified_mountpoint.empty()) {
    layout.mode = CgroupMode::kLegacy;
  } else {
    layout.mode = CgroupMode::kHybrid;
  }
  return layout;
}

Result<CgroupLayout> ReadCgroupLayout() {
  ASSIGN_OR_RETURN(std::string mountinfo, ReadFile("/proc/self/mountinfo", 16 << 20));
  ASSIGN_OR_RETURN(CgroupLayout layout, ParseCgroupLayout(mountinfo));
  if (!layout.unified_mountpoint.empty()) {
    auto ctl = ReadFile(layout.unified_mountpoint + "/cgroup.controllers", 4096);
    if (ctl) {
      for (auto c : Fields(*ctl)) {
        std::string_view name = c;
        while (!name.empty() && name.back() == '\n') name.remove_suffix(1);
        if (!name.empty()) layout.unified_controllers.emplace_back(name);
      }
    }
  }
  return layout;
}

std::string CgroupPaths::DirFor(const std::string& controller) const {
  if (auto it = v1.find(controller); it != v1.end()) return it->second;
  return unified;
}

CgroupPaths ResolveCgroupPaths(const CgroupLayout& layout, std::string_view proc_pid_cgroup) {
  CgroupPaths paths;
  for (std::string_view line : Split(proc_pid_cgroup, '\n')) {
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    std::string_view id = line.substr(0, c1);
    std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
    std::string_view path = line.substr(c2 + 1);
    if (id == "0" && controllers.empty()) {
      if (!layout.unified_mountpoint.empty()) {
        paths.unified = JoinCgroup(layout.unified_mountpoint, layout.unified_root, path);
      }
      continue;
    }
    for (std::string_view ctl : Split(controllers, ',')) {
      for (const auto& h : layout.v1) {
        if (std::find(h.controllers.begin(), h.controllers.end(), ctl) != h.controllers.end()) {
          paths.v1[std::string(ctl)] = JoinCgroup(h.mountpoint, h.root, path);
          break;
        }
      }
    }
  }
  return paths;
}

Result<CgroupPaths> CgroupPathsForPid(pid_t pid, const CgroupLayout& layout) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16);
  if (!text) {
    return std::unexpected(Status(
        Code::kNotFound, "cgroup of pid " + std::to_string(pid) + ": " + text.error().message()));
  }
  return ResolveCgroupPaths(layout, *text);
}

Result<CgroupStats> ReadCgroupStats(const CgroupPaths& paths) {
  CgroupStats st;
  std::string mem = paths.DirFor("memory");
  if (mem.empty() || ::access(mem.c_str(), F_OK) != 0) {
    return std::unexpected(NotFound("memory cgroup " + (mem.empty() ? "(none)" : mem)));
  }
  st.memory_v2 = paths.IsV2("memory");
  if (st.memory_v2) {
    st.memory.usage = ReadU64(mem, "memory.current");
    st.memory.limit = ReadU64(mem, "memory.max");
    st.memory.swap_usage = ReadU64(mem, "memory.swap.current");
    st.memory.swap_limit = ReadU64(mem, "memory.swap.max");
    st.memory.events = ReadKeyed(mem, "memory.events");
  } else {
    st.memory.usage = ReadU64(mem, "memory.usage_in_bytes");
    st.memory.limit = ReadU64(mem, "memory.limit_in_bytes");
    st.memory.max_usage = ReadU64(mem, "memory.max_usage_in_bytes");
    st.memory.failcnt = ReadU64(mem, "memory.failcnt");
    st.memory.swap_usage = ReadU64(mem, "memory.memsw.usage_in_bytes");
    st.memory.swap_limit = ReadU64(mem, "memory.memsw.limit_in_bytes");
    st.memory.kernel_usage = ReadU64(mem, "memory.kmem.usage_in_bytes");
    auto oc = ReadKeyed(mem, "memory.oom_control");
    if (oc.contains("oom_kill")) st.memory.events["oom_kill"] = oc["oom_kill"];
  }
  st.memory.stat = ReadKeyed(mem, "memory.stat");

  if (paths.IsV2("cpu") && paths.IsV2("cpuacct")) {
    if (!paths.unified.empty()) {
      auto cs = ReadKeyed(paths.unified, "cpu.stat");
      st.cpu.usage_ns = Get(cs, "usage_usec") * 1000;
      st.cpu.user_ns = Get(cs, "user_usec") * 1000;
      st.cpu.kernel_ns = Get(cs, "system_usec") * 1000;
      st.cpu.periods = Get(cs, "nr_periods");
      st.cpu.throttled_periods = Get(cs, "nr_throttled");
      st.cpu.throttled_ns = Get(cs, "throttled_usec") * 1000;
    }
  } else {
    std::string acct = paths.DirFor("cpuacct");
    if (!acct.empty() && !paths.IsV2("cpuacct")) {
      st.cpu.usage_ns = ReadU64(acct, "cpuacct.usage");
      auto cs = ReadKeyed(acct, "cpuacct.stat");
      // cpuacct.stat counts USER_HZ ticks.
      long hz = ::sysconf(_SC_CLK_TCK);
      uint64_t ns_per_tick = hz > 0 ? 1000000000ULL / static_cast<uint64_t>(hz) : 10000000ULL;
      st.cpu.user_ns = Get(cs, "user") * ns_per_tick;
      st.cpu.kernel_ns = Get(cs, "system") * ns_per_tick;
      if (auto percpu = ReadFile(acct + "/cpuacct.usage_percpu", 1 << 16)) {
        for (auto v : Fields(*percpu)) {
          if (auto n = ParseU64(v)) st.cpu.per_cpu_ns.push_back(*n);
        }
      }
    }
    std::string cpu = paths.DirFor("cpu");
    if (!cpu.empty() && !paths.IsV2("cpu")) {
      auto cs = ReadKeyed(cpu, "cpu.stat");
      st.cpu.periods = Get(cs, "nr_periods");
      st.cpu.throttled_periods = Get(cs, "nr_throttled");
      st.cpu.throttled_ns = Get(cs, "throttled_time");
    }
  }

  std::string pids = paths.DirFor("pids");
  if (!pids.empty()) {
    st.pids.current = ReadU64(pids, "pids.current");
    uint64_t limit = ReadU64(pids, "pids.max");
    st.pids.limit = limit == UINT64_MAX ? 0 : limit;
  }

  if (!paths.IsV2("blkio")) {
    std::string blk = paths.DirFor("blkio");
    auto sum = [&](const char* file, uint64_t& read, uint64_t& write) {
      auto text = ReadFile(blk + "/" + file, 1 << 20);
      if (!text) return;
      for (auto line : Split(*text, '\n')) {
        auto f = Fields(line);
        if (f.size() != 3) continue;
        uint64_t v = ParseU64(f[2]).value_or(0);
        if (f[1] == "Read") read += v;
        if (f[1] == "Write") write += v;
      }
    };
    sum("blkio.throttle.io_service_bytes", st.io.read_bytes, st.io.write_bytes);
    sum("blkio.throttle.io_serviced", st.io.read_ops, st.io.write_ops);
  } else if (!paths.unified.empty()) {
    if (auto text = ReadFile(paths.unified + "/io.stat", 1 << 20)) {
      for (auto line : Split(*text, '\n')) {
        for (auto kv : Fields(line)) {
          size_t eq = kv.find('=');
          if (eq == std::string_view::npos) continue;
          uint64_t v = ParseU64(kv.substr(eq + 1)).value_or(0);
          std::string_view k = kv.substr(0, eq);
          if (k == "rbytes") st.io.read_bytes += v;
          if (k == "wbytes") st.io.write_bytes += v;
          if (k == "rios") st.io.read_ops += v;
          if (k == "wios") st.io.write_ops += v;
        }
      }
    }
  }
  return st;
}

// ---------------------------------------------------------------------------------------------
// OOM

struct OomWatcher::State {
  bool v2 = false;
  std::string dir;
  UniqueFd fd;                 // v1: eventfd, v2: inotify
  UniqueFd oom_control;        // v1: the file the eventfd is bound to
  uint64_t last_oom_kill = 0;  // v2
  EventLoop::HandlerId handler = 0;
  std::function<void()> on_oom;
};

namespace {

// nullopt once the cgroup is gone (ENOENT, or ENODEV from a file of a removed cgroup).
std::optional<uint64_t> OomKillCount(const std::string& dir, bool v2) {
  auto text = ReadFile(dir + (v2 ? "/memory.events" : "/memory.oom_control"), 4096);
  if (!text) return std::nullopt;
  return Get(ParseFlatKeyed(*text), "oom_kill");
}

}  // namespace

Result<std::unique_ptr<OomWatcher>> OomWatcher::Create(EventLoop* loop, const CgroupPaths& paths,
                                                       std::function<void()> on_oom) {
  auto state = std::make_shared<State>();
  state->dir = paths.DirFor("memory");
  state->v2 = paths.IsV2("memory");
  state->on_oom = std::move(on_oom);
  if (state->dir.empty()) return std::unexpected(NotFound("no memory cgroup to watch"));

  if (state->v2) {
    state->fd.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!state->fd.valid()) return std::unexpected(StatusFromErrno(errno, "inotify_init1"));
    std::string events = state->dir + "/memory.events";
    if (::inotify_add_watch(state->fd.get(), events.c_str(), IN_MODIFY) < 0) {
      return std::unexpected(StatusFromErrno(errno, "inotify_add_watch " + events));
    }
  } else {
    std::string control = state->dir + "/memory.oom_control";
    state->oom_control.reset(::open(control.c_str(), O_RDONLY | O_CLOEXEC));
    if (!state->oom_control.valid()) {
      return std::unexpected(StatusFromErrno(errno, "open " + control));
    }
    state->fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state->fd.valid()) return std::unexpected(StatusFromErrno(errno, "eventfd"));
    std::string line =
        std::to_string(state->fd.get()) + " " + std::to_string(state->oom_control.get());
    std::string ec_path = state->dir + "/cgroup.event_control";
    UniqueFd ec(::open(ec_path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!ec.valid() || ::write(ec.get(), line.data(), line.size()) < 0) {
      return std::unexpected(StatusFromErrno(errno, "register OOM eventfd in " + ec_path));
    }
  }
  if (auto n = OomKillCount(state->dir, state->v2)) {
    state->last_oom_kill = *n;
  }

  std::unique_ptr<OomWatcher> w(new OomWatcher(loop));
  w->state_ = state;
  Status st;
  loop->RunSync([&] {
    std::weak_ptr<State> weak = state;
    auto id = loop->Add(state->fd.get(), EPOLLIN, [loop, weak](uint32_t) {
      auto s = weak.lock();
      if (!s) return;
      bool gone = false;
      if (s->v2) {
        alignas(inotify_event) char buf[4096];
        ssize_t n;
        while ((n = ::read(s->fd.get(), buf, sizeof buf)) > 0) {
          for (char* p = buf; p < buf + n;) {
            auto* ev = reinterpret_cast<inotify_event*>(p);
            if (ev->mask & IN_IGNORED) gone = true;  // the file (the cgroup) was removed
            p += sizeof(inotify_event) + ev->len;
          }
        }
      } else {
        uint64_t count;
        [[maybe_unused]] ssize_t n = ::read(s->fd.get(), &count, sizeof count);
      }
      auto kills = gone ? std::nullopt : OomKillCount(s->dir, s->v2);
      if (!kills) {
        // The cgroup was removed (v1 signals the eventfd then, too): nothing more will come.
        loop->Remove(s->handler);
        s->handler = 0;
        return;
      }
      // v2: memory.events also changes for high/max events, so only a grown oom_kill counts.
      // v1: the eventfd fires when the cgroup goes under OOM — before the OOM killer has
      // picked (and counted) a victim — so every notification of a live cgroup is an OOM,
      // as containerd's v1 epoller reports it.
      bool oom = s->v2 ? *kills > s->last_oom_kill : true;
      s->last_oom_kill = std::max(s->last_oom_kill, *kills);
      if (oom) s->on_oom();
    });
    if (!id) {
      st = id.error();
      return;
    }
    state->handler = *id;
  });
  RETURN_IF_ERROR(st);
  return w;
}

OomWatcher::~OomWatcher() {
  loop_->RunSync([this] {
    if (state_->handler) loop_->Remove(state_->handler);
    state_->handler = 0;
  });
}

}  // namespace berth::oci
