// Unix path sockets whose path may be longer than sun_path (107 bytes). containerd keeps shim
// sockets under a short fixed directory; we keep them under the daemon's own state dir, whatever
// its length, and reach a long path through an O_PATH descriptor of its directory:
// /proc/self/fd/<n>/<name> resolves to the same directory (bind creates the socket there, connect
// finds it), and only the final component has to fit in sun_path.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>

#include "common/fs.h"
#include "common/status.h"

namespace berth {

// A sockaddr_un naming `path` (absolute or relative, never abstract). For a path that does not
// fit, `dir` holds the O_PATH descriptor the address goes through: keep the UnixAddress alive
// until bind/connect returned.
struct UnixAddress {
  sockaddr_un sa{};
  socklen_t len = 0;
  UniqueFd dir;
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&sa); }
};

// InvalidArgument for an empty path, or a final component too long even for the fd route.
Result<UnixAddress> MakeUnixAddress(const std::string& path);

}  // namespace berth
