#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "common/mountinfo.h"

namespace berth {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string Dirname(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

namespace {

Status WriteAll(Env& env, int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = env.Write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return StatusFromErrno(errno, "write " + what);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

Status EnsureDir(const std::string& path, mode_t mode, bool tighten_existing) {
  if (path.empty()) return InvalidArgument("empty directory path");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return FailedPrecondition(path + " exists and is not a directory");
    if (tighten_existing && (st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) {
      return StatusFromErrno(errno, "chmod " + path);
    }
    return Status::Ok();
  }
  std::string parent = Dirname(path);
  if (parent != path && ::access(parent.c_str(), F_OK) != 0) {
    RETURN_IF_ERROR(EnsureDir(parent, 0711));
  }
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return StatusFromErrno(errno, "mkdir " + path);
  }
  // mkdir's mode is filtered by the umask; set it exactly.
  if (::chmod(path.c_str(), mode) != 0) return StatusFromErrno(errno, "chmod " + path);
  return Status::Ok();
}

namespace {

// Creates "<path>.tmp-XXXXXX" exclusively through `env` (mkostemp without the Env seam).
Result<UniqueFd> CreateTemp(Env& env, const std::string& path, std::string& name) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 0; attempt < 100; ++attempt) {
    name = path + ".tmp-";
    for (int i = 0; i < 6; ++i) name += kChars[rng() % (sizeof(kChars) - 1)];
    int fd = env.OpenAt(AT_FDCWD, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) return UniqueFd(fd);
    if (errno != EEXIST) break;
  }
  return std::unexpected(StatusFromErrno(errno, "create temp file for " + path));
}

Status WriteFileRenamed(const std::string& path, std::string_view data, mode_t mode,
                        bool durable, Env& env) {
  std::string tmpl;
  ASSIGN_OR_RETURN(UniqueFd fd, CreateTemp(env, path, tmpl));
  auto fail = [&](Status s) {
    env.UnlinkAt(AT_FDCWD, tmpl.c_str(), 0);
    return s;
  };
  if (::fchmod(fd.get(), mode) != 0) return fail(StatusFromErrno(errno, "chmod " + tmpl));
  if (Status s = WriteAll(env, fd.get(), data, tmpl); !s.ok()) return fail(s);
  if (durable && env.FSync(fd.get()) != 0) return fail(StatusFromErrno(errno, "fsync " + tmpl));
  fd.reset();
  if (env.RenameAt2(AT_FDCWD, tmpl.c_str(), AT_FDCWD, path.c_str(), 0) != 0) {
    return fail(StatusFromErrno(errno, "rename " + tmpl));
  }
  if (!durable) return Status::Ok();
  std::string dir = Dirname(path);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return StatusFromErrno(errno, "open " + dir);
  if (env.FSync(dfd.get()) != 0) return StatusFromErrno(errno, "fsync " + dir);
  return Status::Ok();
}

}  // namespace

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode, Env& env) {
  return WithFilesystem(WriteFileRenamed(path, data, mode, /*durable=*/true, env), path);
}

Status WriteFileReplace(const std::string& path, std::string_view data, mode_t mode, Env& env) {
  return WithFilesystem(WriteFileRenamed(path, data, mode, /*durable=*/false, env), path);
}

Result<std::string> ReadFile(const std::string& path, size_t max_size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(StatusFromErrno(errno, "open " + path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(StatusFromErrno(errno, "read " + path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_size) {
      return std::unexpected(
          Status(Code::kResourceExhausted, path + " is larger than " + std::to_string(max_size)));
    }
  }
  return out;
}

Result<size_t> ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(StatusFromErrno(errno, "read"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

}  // namespace berth
