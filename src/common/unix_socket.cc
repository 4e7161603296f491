#include "common/unix_socket.h"

#include <fcntl.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace berth {

Result<UnixAddress> MakeUnixAddress(const std::string& path) {
  UnixAddress a;
  a.sa.sun_family = AF_UNIX;
  if (path.empty() || path[0] == '\0') {
    return std::unexpected(InvalidArgument("unix socket path is empty"));
  }
  std::string name = path;
  if (path.size() >= sizeof(a.sa.sun_path)) {
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    a.dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!a.dir.valid()) return std::unexpected(StatusFromErrno(errno, "open socket dir " + dir));
    name = "/proc/self/fd/" + std::to_string(a.dir.get()) + "/" + base;
    if (base.empty() || name.size() >= sizeof(a.sa.sun_path)) {
      return std::unexpected(InvalidArgument("unix socket name too long: " + path));
    }
  }
  std::memcpy(a.sa.sun_path, name.data(), name.size());
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
  return a;
}

}  // namespace berth
