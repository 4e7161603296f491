// The runtime options a task is created with: containerd.runc.v1.Options, as the runc shim
// takes them (Create's `options` Any, else what `start` read from stdin into options.json).
#pragma once

#include <google/protobuf/any.pb.h>
#include <sys/types.h>

#include <string>

#include "common/status.h"

namespace berth::shim {

struct RuncOptions {
  std::string binary_name;  // "" = runc
  std::string root;         // "" = the shim's default root
  bool systemd_cgroup = false;
  bool no_pivot_root = false;
  bool no_new_keyring = false;
  uint32_t io_uid = 0;
  uint32_t io_gid = 0;
  std::string shim_cgroup;
};

// Decodes an options Any: containerd.runc.v1.Options, or runtimeoptions.v1.Options whose
// config_path names a JSON file of the same fields (what `ctr run --runtime-config-path`
// sends for runtimes other than io.containerd.runc.v2). Empty Any → defaults. Runtime v1's
// containerd.linux.runc.RuncOptions (runtime → binary_name, runtime_root → root,
// systemd_cgroup) and containerd.linux.runc.CreateOptions (no_pivot_root, no_new_keyring,
// shim_cgroup, io_uid, io_gid) change only their own fields of `base`.
Result<RuncOptions> DecodeOptions(const google::protobuf::Any& any, const RuncOptions& base = {});
// options.json (the runc shim's field names: binary_name, root, systemd_cgroup, ...).
std::string OptionsToJson(const RuncOptions& o);
Result<RuncOptions> OptionsFromJson(const std::string& json);

}  // namespace berth::shim
