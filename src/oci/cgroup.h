// Cgroups from the outside: which layout the host has, where a container's cgroup lives, its
// resource counters, and OOM notifications. We never create or configure cgroups — the OCI
// runtime does that from config.json; we only read what it made.
//
// Layouts (what /proc/self/mountinfo shows):
//   legacy  — only cgroup v1 hierarchies (one per controller or controller group);
//   hybrid  — v1 hierarchies plus a cgroup2 mount (systemd's /sys/fs/cgroup/unified). Usually
//             the cgroup2 mount has no controllers; some hosts put one there (hugetlb on this
//             build machine), which crun refuses ("cgroups in hybrid mode not supported");
//   unified — cgroup2 at /sys/fs/cgroup holds every controller.
// Each resource is read from the v1 hierarchy that has its controller, else from cgroup2.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "oci/event_loop.h"

namespace berth::oci {

enum class CgroupMode { kLegacy, kHybrid, kUnified };
std::string_view CgroupModeName(CgroupMode mode);

struct CgroupLayout {
  struct V1Hierarchy {
    std::string mountpoint;
    std::string root;                      // mountinfo "root" field (non-"/" inside cgroupns)
    std::vector<std::string> controllers;  // "memory", "cpu", ..., or "name=systemd"
  };
  CgroupMode mode = CgroupMode::kLegacy;
  std::vector<V1Hierarchy> v1;
  std::string unified_mountpoint;  // "" when no cgroup2 is mounted
  std::string unified_root = "/";
  std::vector<std::string> unified_controllers;  // the cgroup2 root's cgroup.controllers

  // True on the hybrid layout crun cannot handle: a cgroup2 mount next to v1 hierarchies that
  // holds controllers.
  bool HybridWithUnifiedControllers() const {
    return mode == CgroupMode::kHybrid && !unified_controllers.empty();
  }
};

// Parses /proc/self/mountinfo text (unified_controllers stays empty: that needs a file read).
Result<CgroupLayout> ParseCgroupLayout(std::string_view mountinfo);
// The host's layout, from /proc/self/mountinfo and the cgroup2 root's cgroup.controllers.
Result<CgroupLayout> ReadCgroupLayout();

// The directories one process's cgroup resolves to.
struct CgroupPaths {
  std::map<std::string, std::string> v1;  // controller → directory
  std::string unified;                    // cgroup2 directory, "" without a cgroup2 mount

  // Directory serving `controller`: its v1 hierarchy, else the cgroup2 directory ("" if none).
  std::string DirFor(const std::string& controller) const;
  bool IsV2(const std::string& controller) const { return !v1.contains(controller); }
};

// Resolves /proc/<pid>/cgroup text against `layout`.
CgroupPaths ResolveCgroupPaths(const CgroupLayout& layout, std::string_view proc_pid_cgroup);
// Reads /proc/<pid>/cgroup. NotFound if the process is gone.
Result<CgroupPaths> CgroupPathsForPid(pid_t pid, const CgroupLayout& layout);

// Plain counters the shim turns into containerd's cgroups v1/v2 Metrics. Zero = not available.
struct CgroupStats {
  bool memory_v2 = false;  // which Metrics message fits (the memory controller decides)
  struct {
    uint64_t current = 0;
    uint64_t limit = 0;  // 0 = unlimited
  } pids;
  struct {
    uint64_t usage_ns = 0;
    uint64_t user_ns = 0;
    uint64_t kernel_ns = 0;
    std::vector<uint64_t> per_cpu_ns;  // v1 cpuacct.usage_percpu
    uint64_t periods = 0;
    uint64_t throttled_periods = 0;
    uint64_t throttled_ns = 0;
  } cpu;
  struct {
    uint64_t usage = 0;       // v1 memory.usage_in_bytes, v2 memory.current
    uint64_t limit = 0;       // 0 = unlimited
    uint64_t max_usage = 0;   // v1 only
    uint64_t failcnt = 0;     // v1 only
    uint64_t swap_usage = 0;  // v1 memsw (memory+swap), v2 memory.swap.current
    uint64_t swap_limit = 0;
    uint64_t kernel_usage = 0;               // v1 memory.kmem.usage_in_bytes
    std::map<std::string, uint64_t> stat;    // memory.stat, verbatim keys
    std::map<std::string, uint64_t> events;  // v2 memory.events; v1: oom_kill from oom_control
  } memory;
  struct {
    uint64_t read_bytes = 0;
    uint64_t write_bytes = 0;
    uint64_t read_ops = 0;
    uint64_t write_ops = 0;
  } io;
};

// Reads the counters; files that do not exist leave their fields zero. NotFound if the
// memory cgroup directory itself is gone.
Result<CgroupStats> ReadCgroupStats(const CgroupPaths& paths);

// Watches a memory cgroup for OOM kills and calls `on_oom` (on the loop thread) for each one:
//   v1 — an eventfd registered through cgroup.event_control on memory.oom_control (fires on
//        every OOM and once when the cgroup is removed; the removal one is filtered out);
//   v2 — inotify on memory.events, reporting when the oom_kill counter grows.
// That is what containerd's pkg/oom v1/v2 do. The watcher stops by itself when the cgroup goes.
class OomWatcher {
 public:
  static Result<std::unique_ptr<OomWatcher>> Create(EventLoop* loop, const CgroupPaths& paths,
                                                    std::function<void()> on_oom);
  // Stops watching (synchronously with the loop: no callback runs after this returns).
  ~OomWatcher();

  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;

 private:
  struct State;
  explicit OomWatcher(EventLoop* loop) : loop_(loop) {}
  EventLoop* const loop_;
  std::shared_ptr<State> state_;
};

// Parses "key value" lines (memory.stat, memory.events, cpu.stat, ...).
std::map<std::string, uint64_t> ParseFlatKeyed(std::string_view text);

}  // namespace berth::oci
