// The OCI runtime spec `berth run` / `berth create` put in a container record, built the way
// containerd 1.6's client builds it for `ctr run` (oci.WithDefaultSpec, WithDefaultUnixDevices,
// WithImageConfig, then the flags), as a JSON document for the
// `types.containerd.io/opencontainers/runtime-spec/1/Spec` Any.
//
// The default is containerd's: pid/ipc/uts/mount/network namespaces; /proc, /dev, /dev/pts,
// /dev/shm, /dev/mqueue, /sys (ro), /run, plus /sys/fs/cgroup (ro, as Docker and the CRI add);
// containerd's 14 default capabilities; masked and read-only /proc paths; RLIMIT_NOFILE 1024;
// no_new_privileges; devices denied except the standard character devices; cgroups path
// /<namespace>/<id>. Like containerd, a --rootfs container gets no PATH: its args must be
// absolute. An image's Env (or, when it has none, containerd's default PATH) applies.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "client/user.h"
#include "common/status.h"
#include "common/validate.h"

namespace berth::client {

inline constexpr char kSpecTypeUrl[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
inline constexpr char kProcessTypeUrl[] =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";
inline constexpr char kDefaultPathEnv[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct SpecOptions {
  std::string id;
  std::string ns;
  // An absolute host directory (--rootfs); empty: "rootfs" in the bundle (the snapshot).
  std::string rootfs_path;
  // The image config's "config" object (Env, Cmd, Entrypoint, WorkingDir, User); null when the
  // container has no image.
  nlohmann::json image_config;
  std::vector<std::string> args;  // replaces the image's Entrypoint + Cmd when not empty
  std::vector<std::string> env;   // KEY=VALUE; a bare KEY unsets it
  std::string cwd;
  std::vector<nlohmann::json> mounts;  // OCI mount objects (ParseMountFlag)
  Labels annotations;
  bool tty = false;
  bool read_only = false;
  bool net_host = false;
  bool privileged = false;
  // Resolves the image config's User ("name", "uid", "name:group", "uid:gid", ...) to ids
  // (ResolveUser in user.h); unset: only numeric uid[:gid] is accepted (gid 0 when missing).
  // Either way a numeric user out of range is InvalidArgument (CVE-2024-40635).
  std::function<Result<UserIds>(const std::string& user)> resolve_user;
};

// The spec as an OCI runtime-spec JSON document. InvalidArgument when there are no process
// args at all, for a numeric user or group out of range, or (without resolve_user) for a
// named image user; resolve_user's errors.
Result<nlohmann::json> GenerateSpec(const SpecOptions& opts);

// ctr's --mount syntax: "type=bind,src=/a,dst=/b,options=rbind:ro" (source|src,
// destination|dst, options separated by ':'). InvalidArgument on anything else.
Result<nlohmann::json> ParseMountFlag(std::string_view flag);

// containerd's replaceOrAppendEnvValues: `overrides` replace same-named entries of `defaults`
// or are appended; a bare "KEY" removes KEY.
std::vector<std::string> MergeEnv(const std::vector<std::string>& defaults,
                                  const std::vector<std::string>& overrides);

}  // namespace berth::client
