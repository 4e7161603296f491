// Which file system holds a path, for error messages a user can act on: a full disk is
// reported as "no space left on device: <path> (filesystem <mount point>)" so the operator
// knows which mount to clean up (issue 12 item 7; containerd passes the bare errno text).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace berth {

// Mount point of the file system holding `path` (or its nearest existing ancestor), from
// /proc/self/mountinfo matched by st_dev; "" when it cannot be determined.
std::string MountPointOf(const std::string& path);

// StatusFromErrno(err, what), except that ENOSPC and EDQUOT become ResourceExhausted
// "<what>: no space left on device: <path> (filesystem <mount point>)" ("disk quota exceeded"
// for EDQUOT).
Status StatusFromErrnoAt(int err, std::string_view what, const std::string& path);

// For a ResourceExhausted status that came from a full disk (SQLite's SQLITE_FULL, or an
// errno message) without naming a file system: the same code, message extended with
// "<path> (filesystem <mount point>)". Any other status is returned unchanged.
Status WithFilesystem(Status s, const std::string& path);

}  // namespace berth
