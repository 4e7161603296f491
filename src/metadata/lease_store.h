// Leases: named handles that keep content, ingests and snapshots alive while a client works
// with them (a pull holds one from the first blob until the image record exists).
//
// A lease lives in one namespace and holds a set of resources, each a (type, id) pair:
//   "content"                  id = a blob digest (validated and stored normalised)
//   "ingests"                  id = an ingest ref
//   "snapshots/<snapshotter>"  id = a snapshot key
// The resources need not exist: a lease records intent, GC decides what is kept. Two labels are
// interpreted by GC, not here: `containerd.io/gc.expire` (RFC 3339; once past, the lease stops
// protecting anything and is collected) and `containerd.io/gc.flat` (the lease's resources are
// kept but their gc.ref labels are not followed). Both are stored as ordinary labels.
//
// Resources are also attached implicitly, through the `containerd-lease` request header, by the
// stores that create them (AttachToLease in object_labels.h).
//
// Thread-safe: every method is one metadata transaction. Namespace names are validated by the
// caller (services do it with RequireNamespace).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/validate.h"
#include "metadata/db.h"

namespace berth::metadata {

inline constexpr char kGcExpireLabel[] = "containerd.io/gc.expire";
inline constexpr char kGcFlatLabel[] = "containerd.io/gc.flat";

struct Lease {
  std::string id;
  int64_t created_at = 0;  // unix nanoseconds, UTC, set by the store
  Labels labels;
};

struct LeaseResource {
  std::string id;
  std::string type;
  bool operator==(const LeaseResource&) const = default;
};

// Checks a resource's type and normalises its id, as containerd's lease manager does.
// Errors: InvalidArgument ("content/x", "snapshots" without or with more than one snapshotter
// part, a content id that is not a digest), Unimplemented (any other type).
Result<LeaseResource> NormalizeLeaseResource(const LeaseResource& r);

class LeaseStore {
 public:
  explicit LeaseStore(Db& db) : db_(db) {}

  // Creates lease `id` in `ns`, making the namespace exist. Labels with empty values are
  // dropped. Errors: InvalidArgument (empty id, a label over 4096 bytes), AlreadyExists.
  Result<Lease> Create(const std::string& ns, const std::string& id, const Labels& labels);

  // Removes the lease with its labels and resources. The resources themselves stay until GC
  // finds them unreferenced. Errors: NotFound.
  Status Delete(const std::string& ns, const std::string& id);

  // Leases of `ns` sorted by id, matching any of `filters` (fields `id`, `labels.<key>`).
  // Errors: InvalidArgument (filter syntax).
  Result<std::vector<Lease>> List(const std::string& ns,
                                  std::span<const std::string> filters = {}) const;

  // Adds/removes one resource (see NormalizeLeaseResource for its rules). Adding one that is
  // already there, or removing one that is not, succeeds. Errors: NotFound (no such lease,
  // checked before the resource), InvalidArgument, Unimplemented.
  Status AddResource(const std::string& ns, const std::string& lease, const LeaseResource& r);
  Status DeleteResource(const std::string& ns, const std::string& lease, const LeaseResource& r);

  // Resources of the lease: content first, then ingests, then snapshots by snapshotter; ids
  // sorted within a type. Errors: NotFound.
  Result<std::vector<LeaseResource>> ListResources(const std::string& ns,
                                                   const std::string& lease) const;

 private:
  Db& db_;
};

}  // namespace berth::metadata
