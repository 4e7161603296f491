// Directory helpers the snapshot backends share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/status.h"
#include "snapshots/snapshotter.h"

namespace berth::snapshots {

// Walks `path` without following symlinks: size = allocated bytes (st_blocks * 512), inodes =
// distinct inodes, hardlinks counted once (containerd's fs.DiskUsage).
Result<Usage> DiskUsage(const std::string& path);

// Makes a fresh "<dir>/new-XXXXXX" directory with mode 0700 (chmod-ed by the caller), through
// `env` (mkdirat).
Result<std::string> MakeTempDir(const std::string& dir, Env& env = Env::Default());

// fsync(2)s directory `dir` through `env`, making the entries made in it durable.
Status SyncDir(Env& env, const std::string& dir);

// Renames `path` to "<dir>/rm-<id>" and deletes it; OK when `path` does not exist.
Status RenameAndRemove(const std::string& path, const std::string& dir, int64_t id);

// Copies the tree under `src` into existing directory `dst`, preserving owners, modes,
// timestamps, xattrs, hardlinks, symlinks and device nodes (`cp -a --reflink=auto`).
Status CopyTree(const std::string& src, const std::string& dst);

// Decimal directory names under `dir` that parse as positive ids, highest first.
Result<std::vector<int64_t>> ListIds(const std::string& dir);

// "snapshots/<id>"-style decimal id from a directory name; 0 when not an id.
int64_t ParseId(const std::string& name);

}  // namespace berth::snapshots
