// Snapshotters: filesystem changesets kept in parent/child chains (containerd's
// snapshots/snapshotter.go).
//
// Vocabulary and lifecycle:
//  - A snapshot is named by a `key` while it is Active (writable) or a View (read-only), and by
//    a `name` once Committed (immutable). Only Committed snapshots can be parents.
//  - Prepare(key, parent) makes an Active snapshot whose contents start as `parent`'s ("" =
//    empty); the caller mounts the returned mounts, writes, unmounts, then Commit(name, key)
//    turns it into Committed `name` (the key disappears). View(key, parent) is the read-only
//    counterpart; it cannot be committed.
//  - Remove(key) works on every kind but refuses while children exist.
//  - Importing a layer: Prepare("extract-<random> <chainID>", parentChainID), apply the diff on
//    the mounts, Commit(chainID, key); a later Stat(chainID) tells a client it is present.
//
// Two roles live here:
//  - Snapshotter: what clients see. Keys are per namespace (Ctx::ns); the same key may exist in
//    two namespaces. metadata::SnapshotStore implements it over SQLite and a Backend.
//  - Backend: the on-disk side only (overlayfs, native). It knows numeric ids (decimal
//    directory names, unique per snapshotter), never keys, namespaces or rules.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mount.h"
#include "common/status.h"
#include "common/validate.h"

namespace berth::snapshots {

// Values equal containerd's Kind enum on the wire.
enum class Kind : int { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

// "view", "active", "committed" (the `kind` filter field); "unknown" otherwise.
std::string_view KindName(Kind kind);

struct Info {
  std::string name;    // key (Active/View) or name (Committed)
  std::string parent;  // name of the committed parent, "" for none
  Kind kind = Kind::kUnknown;
  Labels labels;
  int64_t created = 0;  // unix nanoseconds
  int64_t updated = 0;
};

// One mount, as data: the caller performs it (containerd.types.Mount without target).
using Mount = ::berth::Mount;

struct Usage {
  int64_t size = 0;    // bytes in use (allocated blocks, hardlinks counted once)
  int64_t inodes = 0;  // distinct inodes, the snapshot's root included
};

// Who is asking: the namespace (required) and the lease new snapshots are attached to ("" =
// none), as containerd carries them in context.Context.
struct Ctx {
  std::string ns;
  std::string lease;
};

// Thread-safe: all methods may be called concurrently.
class Snapshotter {
 public:
  virtual ~Snapshotter() = default;

  // Creates Active snapshot `key` on Committed `parent` ("" = empty) and returns its mounts.
  // Label `containerd.io/snapshot.ref=<target>` with Committed `target` present → AlreadyExists.
  // Errors: InvalidArgument (empty key, bad labels, parent not committed), AlreadyExists (key
  // taken), NotFound (parent, or the lease).
  virtual Result<std::vector<Mount>> Prepare(const Ctx& ctx, std::string_view key,
                                             std::string_view parent, const Labels& labels) = 0;
  // Read-only counterpart of Prepare; same errors.
  virtual Result<std::vector<Mount>> View(const Ctx& ctx, std::string_view key,
                                          std::string_view parent, const Labels& labels) = 0;
  // Mounts of an Active snapshot or View. Errors: NotFound, FailedPrecondition (Committed).
  virtual Result<std::vector<Mount>> Mounts(const Ctx& ctx, std::string_view key) = 0;
  // Active `key` becomes Committed `name` with the same parent and labels = `labels`; its usage
  // is measured and stored. Errors: NotFound, FailedPrecondition (not Active), AlreadyExists.
  virtual Status Commit(const Ctx& ctx, std::string_view name, std::string_view key,
                        const Labels& labels) = 0;
  // Errors: NotFound, FailedPrecondition (has children).
  virtual Status Remove(const Ctx& ctx, std::string_view key) = 0;
  // Errors: NotFound.
  virtual Result<Info> Stat(const Ctx& ctx, std::string_view key) = 0;
  // Edits labels of `info.name` by field mask (metadata::ParseLabelMask rules); other paths are
  // InvalidArgument. Errors: NotFound, InvalidArgument.
  virtual Result<Info> Update(const Ctx& ctx, const Info& info,
                              const std::vector<std::string>& fieldpaths) = 0;
  // Calls fn for every snapshot of the namespace matching any of `filters` (fields `name`,
  // `parent`, `kind`, `labels.<key>`), ordered by name. Errors: InvalidArgument (filter), or
  // what fn returns.
  virtual Status Walk(const Ctx& ctx, const std::function<Status(const Info&)>& fn,
                      std::span<const std::string> filters = {}) = 0;
  // Active: measured now; others: as stored at commit (0 for views). Errors: NotFound.
  virtual Result<snapshots::Usage> Usage(const Ctx& ctx, std::string_view key) = 0;
  // Removes on-disk data that no snapshot of any namespace references.
  virtual Status Cleanup(const Ctx& ctx) = 0;
};

// The on-disk half of a snapshotter. Ids are positive and never reused. Thread-safe for
// distinct ids.
class Backend {
 public:
  virtual ~Backend() = default;
  // Plugin id: "overlayfs", "native".
  virtual std::string_view name() const = 0;
  // Creates the data of snapshot `id` (kind Active or View) whose parents are `parents`,
  // nearest first. Built under a temporary name and renamed into place.
  virtual Status Create(int64_t id, Kind kind, std::span<const int64_t> parents) = 0;
  // Mounts of snapshot `id` as compat §5.2/§5.3 define them.
  virtual Result<std::vector<Mount>> Mounts(int64_t id, Kind kind,
                                            std::span<const int64_t> parents) const = 0;
  // Measures the data of `id` (zero when it holds none, e.g. a native view).
  virtual Result<Usage> Measure(int64_t id) const = 0;
  // Deletes the data of `id`; OK when there is none.
  virtual Status Remove(int64_t id) = 0;
  // Ids with data on disk, highest (newest, so children) first.
  virtual Result<std::vector<int64_t>> List() const = 0;

  // Garbage collection: removes the data of every id not in `keep` (children first), and
  // retries the removals that failed part way before ("rm-<id>" dirs, e.g. a tree that was too
  // deep to remove then). One entry that cannot be removed is logged and skipped. Returns how
  // many entries were removed. Errors: only when the backend's directory cannot be listed.
  // The caller holds the metadata's GC lock exclusively, which every Create and Remove through
  // the metadata runs under (shared).
  virtual Result<int64_t> Sweep(const std::set<int64_t>& keep) = 0;
  // How many directories are waiting for removal (the leftovers Sweep retries), for
  // Introspection's `removal_pending` export.
  virtual Result<int64_t> PendingRemovals() const = 0;
};

}  // namespace berth::snapshots
