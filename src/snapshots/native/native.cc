#include "snapshots/native/native.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/fs.h"
#include "common/mountinfo.h"
#include "snapshots/fs_util.h"
#include "snapshots/sweep.h"

namespace berth::snapshots {

Result<std::unique_ptr<NativeBackend>> NativeBackend::Open(const std::string& root, Env& env) {
  RETURN_IF_ERROR(EnsureDir(root, 0700));
  RETURN_IF_ERROR(EnsureDir(root + "/snapshots", 0700));
  return std::unique_ptr<NativeBackend>(new NativeBackend(root, env));
}

Status NativeBackend::Create(int64_t id, Kind kind, std::span<const int64_t> parents) {
  if (kind != Kind::kActive && !parents.empty()) return Status::Ok();  // binds the parent
  std::string snapshots = root_ + "/snapshots";
  ASSIGN_OR_RETURN(std::string tmp, MakeTempDir(snapshots, env_));
  auto fail = [&](Status s) {
    (void)RenameAndRemove(tmp, snapshots, -id);
    return WithFilesystem(std::move(s), tmp);
  };
  if (::chmod(tmp.c_str(), 0755) != 0) return fail(StatusFromErrno(errno, "chmod " + tmp));
  if (!parents.empty()) {
    // cp -a also copies the parent root's owner, mode and xattrs onto tmp.
    if (Status s = CopyTree(Dir(parents[0]), tmp); !s.ok()) return fail(s);
  }
  // Durable before the caller records the snapshot in the database (a committed row must never
  // outlive its directory in a power cut): the entries made in tmp, then its new name.
  if (Status s = SyncDir(env_, tmp); !s.ok()) return fail(s);
  std::string dst = Dir(id);
  if (env_.RenameAt2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dst.c_str(), 0) != 0) {
    return fail(StatusFromErrno(errno, "rename " + tmp + " to " + dst));
  }
  if (Status s = SyncDir(env_, snapshots); !s.ok()) {
    (void)RenameAndRemove(dst, snapshots, -id);
    return s;
  }
  return Status::Ok();
}

Result<std::vector<Mount>> NativeBackend::Mounts(int64_t id, Kind kind,
                                                 std::span<const int64_t> parents) const {
  if (kind == Kind::kView && !parents.empty()) {
    return std::vector<Mount>{{"bind", Dir(parents[0]), {"rbind", "ro"}}};
  }
  return std::vector<Mount>{{"bind", Dir(id), {"rbind", "rw"}}};
}

Result<Usage> NativeBackend::Measure(int64_t id) const {
  std::string dir = Dir(id);
  if (::access(dir.c_str(), F_OK) != 0) return Usage{};
  return DiskUsage(dir);
}

Status NativeBackend::Remove(int64_t id) {
  return RenameAndRemove(Dir(id), root_ + "/snapshots", id);
}

Result<std::vector<int64_t>> NativeBackend::List() const { return ListIds(root_ + "/snapshots"); }

Result<int64_t> NativeBackend::Sweep(const std::set<int64_t>& keep) {
  return SweepSnapshotDir(root_ + "/snapshots", keep, [this](int64_t id) { return Remove(id); });
}

Result<int64_t> NativeBackend::PendingRemovals() const {
  return CountPendingRemovals(root_ + "/snapshots");
}

}  // namespace berth::snapshots
