#include "snapshots/fs_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <utility>

#include "common/mountinfo.h"
#include "common/fs.h"

extern char** environ;

namespace berth::snapshots {

namespace stdfs = std::filesystem;

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kView: return "view";
    case Kind::kActive: return "active";
    case Kind::kCommitted: return "committed";
    default: return "unknown";
  }
}

Result<Usage> DiskUsage(const std::string& path) {
  // An fd-relative iterative walk (common/fs.h): a container decides how deep its snapshot
  // is, so no recursion, no full paths (they pass PATH_MAX) and no fd per level.
  Usage u;
  std::set<std::pair<dev_t, ino_t>> seen;
  auto account = [&](const struct stat& st) {
    if (seen.insert({st.st_dev, st.st_ino}).second) {
      u.size += static_cast<int64_t>(st.st_blocks) * 512;
    }
  };
  UniqueFd root(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return std::unexpected(StatusFromErrno(errno, "walk " + path));
  struct stat st;
  if (::fstat(root.get(), &st) != 0) return std::unexpected(StatusFromErrno(errno, "stat " + path));
  account(st);
  RETURN_IF_ERROR(WalkTreeAt(root.get(), [&](const WalkEntry& e) -> Result<bool> {
                    account(e.st);
                    return true;
                  }).Wrap("walk " + path));
  u.inodes = static_cast<int64_t>(seen.size());
  return u;
}

Result<std::string> MakeTempDir(const std::string& dir, Env& env) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string path = dir + "/new-";
    for (int i = 0; i < 6; ++i) path += kChars[rng() % (sizeof(kChars) - 1)];
    if (env.MkdirAt(AT_FDCWD, path.c_str(), 0700) == 0) return path;
    if (errno != EEXIST) break;
  }
  return std::unexpected(StatusFromErrnoAt(errno, "create temp dir in " + dir, dir));
}

Status SyncDir(Env& env, const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return StatusFromErrno(errno, "open " + dir);
  int rc = env.FSync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return StatusFromErrno(err, "fsync " + dir);
  return Status::Ok();
}

Status RenameAndRemove(const std::string& path, const std::string& dir, int64_t id) {
  std::string doomed = dir + "/rm-" + std::to_string(id);
  if (::rename(path.c_str(), doomed.c_str()) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return StatusFromErrno(errno, "rename " + path);
  }
  // Iterative, fd-bounded and unbounded in depth: GC must be able to remove whatever a
  // container or a layer built, or the directory stays behind as rm-<id> for good.
  return RemoveAll(doomed);
}

Status CopyTree(const std::string& src, const std::string& dst) {
  std::string from = src + "/.", to = dst + "/";
  const char* argv[] = {"cp", "-a", "--reflink=auto", "--", from.c_str(), to.c_str(), nullptr};
  pid_t pid;
  int rc = ::posix_spawnp(&pid, "cp", nullptr, nullptr, const_cast<char* const*>(argv), environ);
  if (rc != 0) return StatusFromErrno(rc, "spawn cp");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return StatusFromErrno(errno, "wait for cp");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Internal("copy " + src + " to " + dst + ": cp failed with status " +
                    std::to_string(status));
  }
  return Status::Ok();
}

int64_t ParseId(const std::string& name) {
  if (name.empty() || name.size() > 18 ||
      !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  return std::strtoll(name.c_str(), nullptr, 10);
}

Result<std::vector<int64_t>> ListIds(const std::string& dir) {
  std::vector<int64_t> ids;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    if (int64_t id = ParseId(e.path().filename().string()); id > 0) ids.push_back(id);
  }
  if (ec && ec.value() != ENOENT) return std::unexpected(StatusFromErrno(ec.value(), "list " + dir));
  std::sort(ids.rbegin(), ids.rend());
  return ids;
}

}  // namespace berth::snapshots
