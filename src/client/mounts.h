// Mounting what a snapshotter returns, from the CLI process (berthd is local, so the mounts
// it describes are paths on this host): `berth images mount`, `berth snapshots prepare
// --mount`. Also the shell form ctr prints for `snapshots mounts`.
#pragma once

#include <string>
#include <vector>

#include "common/mount.h"
#include "common/status.h"
#include "github.com/containerd/containerd/api/types/mount.pb.h"

namespace berth::client {

using MountList = google::protobuf::RepeatedPtrField<containerd::types::Mount>;

// "mount -t <type> <source> <target> -o <opt,...>", one line per mount, as ctr prints them
// (no trailing newline after the last).
std::string MountCommands(const MountList& mounts, const std::string& target);

// Mounts each of `mounts` on `target` in order (a later one stacks on an earlier one), each
// with berth::MountOn (common/mount.h). On failure the mounts made so far are undone.
Status MountAll(const MountList& mounts, const std::string& target);

// berth::UnmountAll (common/mount.h), non-lazy as ctr's unmount.
using berth::UnmountAll;

// `target` as an absolute, normalized path, checked to be an existing directory (mounts,
// and the snapshot and lease keys named after them, must not depend on the working
// directory). NotFound when it does not exist.
Result<std::string> MountTargetPath(const std::string& target);

// Whether `path` (absolute, normalized) is a mount point in this mount namespace
// (/proc/self/mountinfo).
Result<bool> IsMountPoint(const std::string& path);

}  // namespace berth::client
