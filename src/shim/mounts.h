// Rootfs mounts for Task.Create: containerd passes the snapshot's mounts (overlay, bind) and
// the shim mounts them on <bundle>/rootfs, as the runc shim does.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace berth::shim {

struct MountSpec {
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

// Mounts `mounts` in order on `target`; on failure unmounts what it mounted.
Status MountAll(const std::vector<MountSpec>& mounts, const std::string& target);
// Unmounts everything on `target` (lazily, repeatedly, until nothing is mounted there).
// Not mounted is fine.
Status UnmountAll(const std::string& target);

}  // namespace berth::shim
