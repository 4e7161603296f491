// Garbage collection of a snapshot backend directory laid out as the native and overlayfs
// backends lay theirs out:
//   <dir>/<id>       the data of snapshot `id` (decimal, positive)
//   <dir>/rm-<id>    a removal in progress, or one that failed part way (RenameAndRemove
//                    renames first, then deletes the tree); `id` is negative for the temp dir of
//                    a Create that failed
//   <dir>/new-XXXXXX a Create in progress (left alone here)
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "common/status.h"

namespace berth::snapshots {

// Removes every id under `dir` not in `keep` with `remove` (highest, so children, first), then
// retries the "rm-*" leftovers that were there before this sweep. Failures are logged and
// skipped. Returns how many entries were removed. Errors: `dir` cannot be listed.
Result<int64_t> SweepSnapshotDir(const std::string& dir, const std::set<int64_t>& keep,
                                 const std::function<Status(int64_t)>& remove);

// How many "rm-*" leftovers `dir` holds.
Result<int64_t> CountPendingRemovals(const std::string& dir);

}  // namespace berth::snapshots
