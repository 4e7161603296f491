#include "snapshots/overlay/overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "common/fs.h"
#include "common/mountinfo.h"
#include "snapshots/fs_util.h"
#include "snapshots/sweep.h"

namespace berth::snapshots {

Result<std::unique_ptr<OverlayBackend>> OverlayBackend::Open(const std::string& root,
                                                             bool index_off, Env& env) {
  RETURN_IF_ERROR(EnsureDir(root, 0700));
  RETURN_IF_ERROR(EnsureDir(root + "/snapshots", 0700));
  return std::unique_ptr<OverlayBackend>(new OverlayBackend(root, index_off, env));
}

bool OverlayBackend::DetectIndexOff() {
  return ::access("/sys/module/overlay/parameters/index", F_OK) == 0;
}

Status OverlayBackend::Create(int64_t id, Kind kind, std::span<const int64_t> parents) {
  std::string snapshots = root_ + "/snapshots";
  ASSIGN_OR_RETURN(std::string tmp, MakeTempDir(snapshots, env_));
  auto fail = [&](Status s) {
    (void)RenameAndRemove(tmp, snapshots, -id);
    return WithFilesystem(std::move(s), tmp);
  };
  // The snapshot dir itself stays 0700 so nothing below it is reachable by other users.
  std::string fs = tmp + "/fs";
  if (env_.MkdirAt(AT_FDCWD, fs.c_str(), 0755) != 0) return fail(StatusFromErrno(errno, "mkdir " + fs));
  if (::chmod(fs.c_str(), 0755) != 0) return fail(StatusFromErrno(errno, "chmod " + fs));
  if (kind == Kind::kActive) {
    std::string work = tmp + "/work";
    if (env_.MkdirAt(AT_FDCWD, work.c_str(), 0711) != 0) return fail(StatusFromErrno(errno, "mkdir " + work));
  }
  if (!parents.empty()) {
    // The new upper dir is the root of the merged tree: it must look like the parent's root.
    struct stat st;
    std::string pfs = UpperPath(parents[0]);
    if (::stat(pfs.c_str(), &st) != 0) return fail(StatusFromErrno(errno, "stat " + pfs));
    if (::lchown(fs.c_str(), st.st_uid, st.st_gid) != 0) {
      return fail(StatusFromErrno(errno, "chown " + fs));
    }
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

Result<std::vector<Mount>> OverlayBackend::Mounts(int64_t id, Kind kind,
                                                  std::span<const int64_t> parents) const {
  if (parents.empty()) {
    return std::vector<Mount>{
        {"bind", UpperPath(id), {kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  std::vector<std::string> options;
  if (index_off_) options.push_back("index=off");
  if (kind == Kind::kActive) {
    options.push_back("workdir=" + WorkPath(id));
    options.push_back("upperdir=" + UpperPath(id));
  } else if (parents.size() == 1) {
    return std::vector<Mount>{{"bind", UpperPath(parents[0]), {"ro", "rbind"}}};
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < parents.size(); ++i) {
    if (i > 0) lower += ':';
    lower += UpperPath(parents[i]);
  }
  options.push_back(std::move(lower));
  return std::vector<Mount>{{"overlay", "overlay", std::move(options)}};
}

Result<Usage> OverlayBackend::Measure(int64_t id) const {
  std::string fs = UpperPath(id);
  if (::access(fs.c_str(), F_OK) != 0) return Usage{};
  return DiskUsage(fs);
}

Status OverlayBackend::Remove(int64_t id) {
  return RenameAndRemove(Dir(id), root_ + "/snapshots", id);
}

Result<std::vector<int64_t>> OverlayBackend::List() const { return ListIds(root_ + "/snapshots"); }

Result<int64_t> OverlayBackend::Sweep(const std::set<int64_t>& keep) {
  return SweepSnapshotDir(root_ + "/snapshots", keep, [this](int64_t id) { return Remove(id); });
}

Result<int64_t> OverlayBackend::PendingRemovals() const {
  return CountPendingRemovals(root_ + "/snapshots");
}

}  // namespace berth::snapshots
