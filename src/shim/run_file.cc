#include "shim/run_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/fs.h"

namespace berth::shim {

Status WriteRunFile(const std::string& path, std::string_view data) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return StatusFromErrno(errno, "create " + tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = StatusFromErrno(errno, "write " + tmp);
      ::unlink(tmp.c_str());
      return st;
    }
    off += static_cast<size_t>(n);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = StatusFromErrno(errno, "rename " + tmp);
    ::unlink(tmp.c_str());
    return st;
  }
  return Status();
}

}  // namespace berth::shim
