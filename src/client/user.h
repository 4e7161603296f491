// An image's USER ("name", "uid", "name:group", "uid:gid", "uid:group", "name:gid") as the
// uid and gid a container's process runs with: containerd's oci.WithUser, shared by `berth run`
// and (next) the CRI spec builder.
//
// The rule that matters for security (containerd CVE-2024-40635; reliability-anchors T20): a
// user or group that looks like a number — all digits, optionally signed — IS a number and is
// never looked up as a name. A number outside [0, kMaxId] is InvalidArgument. Looking it up as
// a name instead (what containerd 1.6.20 does for values beyond int32) lets an image whose
// USER is 4294967296 or 99999999999 carry an /etc/passwd line "4294967296:x:0:0:..." and run
// as root.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace berth::client {

// The highest uid or gid a numeric USER may name: runc requires ids <= INT32_MAX and
// containerd follows it (oci/spec_opts.go WithUser).
inline constexpr uint32_t kMaxId = 0x7fffffff;

// {uid, gid}.
using UserIds = std::pair<uint32_t, uint32_t>;

// `s` as an id when it is numeric ([+-]?[0-9]+), nullopt when it is a name (anything else,
// including ""). InvalidArgument, naming `what` ("user", "group"), for a number outside
// [0, kMaxId].
Result<std::optional<uint32_t>> ParseNumericId(std::string_view s, std::string_view what);

// A USER string split into its user and group parts, each numeric or a name.
struct UserRef {
  std::string user;                // as written
  std::optional<uint32_t> uid;     // set when `user` is numeric
  std::string group;               // "" when there is no ":group" part
  std::optional<uint32_t> gid;     // set when `group` is numeric
};

// Splits and classifies `user`. InvalidArgument for an empty user part, more than one ':',
// or an out-of-range number (ParseNumericId).
Result<UserRef> ParseUser(std::string_view user);

// Reads a file of the image's root filesystem ("etc/passwd", "etc/group"): its content, or ""
// when it does not exist.
using RootFileReader = std::function<Result<std::string>(const char* rel)>;

// Resolves `user` as containerd's WithUser does, reading /etc/passwd and /etc/group only when
// a name must be looked up (or a lone uid's primary group): a lone numeric uid without a passwd
// entry gets gid 0; an unknown name or group is NotFound.
Result<UserIds> ResolveUser(std::string_view user, const RootFileReader& read);

// ResolveUser against the root filesystem at `root`, whose files are opened with openat2
// RESOLVE_IN_ROOT (the image's symlinks cannot leave it).
Result<UserIds> ResolveUserInRoot(const std::string& root, std::string_view user);

// The ids of `user` when it needs no files at all ("uid:gid"), nullopt otherwise; the parse
// errors of ParseUser.
Result<std::optional<UserIds>> NumericUserIds(std::string_view user);

}  // namespace berth::client
