// Containers: the metadata record of a container — what to run (an OCI spec), with which
// runtime, on which root filesystem (snapshotter + snapshot key), from which image. Nothing
// here runs anything; a task is the running side and lives elsewhere.
//
// Semantics are containerd 1.6's metadata container store:
//   - Create validates (ID is an identifier; labels ≤ 4096 bytes each; runtime name set; spec
//     present; snapshot key ⇒ snapshotter; extension names non-empty) and refuses a taken ID
//     with AlreadyExists;
//   - Update edits by field mask — `labels`, `labels.<key>`, `spec`, `extensions`,
//     `extensions.<name>`, `image`, `snapshotkey`, applied in the order given — or, with no
//     mask, replaces exactly those five fields. The snapshotter and the runtime (name and
//     options) never change: with no mask a different snapshotter or runtime name is
//     InvalidArgument, and no path names them;
//   - labels with empty values are never stored (setting one deletes it);
//   - the spec, runtime options and extensions are the client's `google.protobuf.Any`s, kept
//     byte for byte and never decoded;
//   - created_at and updated_at are set here, UTC.
//
// Containers are garbage-collection roots: their snapshot (snapshotter/snapshot_key) and
// whatever their `containerd.io/gc.ref.*` labels name stay while the container exists. They
// are not lease resources (containerd 1.6 does not attach them to the request's lease).
//
// Thread-safe: every method is one metadata transaction. Namespace names are validated by the
// caller.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/validate.h"
#include "metadata/db.h"

namespace berth::metadata {

// A protobuf Any as the client sent it: type URL and serialized value, opaque to the store.
struct AnyValue {
  std::string type_url;
  std::string value;
  bool operator==(const AnyValue&) const = default;
};

struct Container {
  std::string id;
  Labels labels;
  std::string image;                        // image name; not validated, may be ""
  std::string runtime_name;                 // e.g. "io.containerd.runc.v2"
  std::optional<AnyValue> runtime_options;  // absent ≠ present-but-empty
  std::optional<AnyValue> spec;             // required; OCI spec JSON in containerd's clients
  std::string snapshotter;
  std::string snapshot_key;
  std::map<std::string, AnyValue> extensions;
  int64_t created_at = 0;  // unix nanoseconds, UTC
  int64_t updated_at = 0;
  bool operator==(const Container&) const = default;
};

class ContainerStore {
 public:
  explicit ContainerStore(Db& db) : db_(db) {}

  // Errors: NotFound.
  Result<Container> Get(const std::string& ns, const std::string& id) const;

  // Containers of `ns` sorted by ID, matching any of `filters` (fields `id`, `runtime.name`,
  // `image`, `labels.<key>`). Errors: InvalidArgument (bad filter).
  Result<std::vector<Container>> List(const std::string& ns,
                                      std::span<const std::string> filters = {}) const;

  // Stores `container` (timestamps ignored and set now), making the namespace exist; returns
  // what was stored. Errors: InvalidArgument (validation), AlreadyExists.
  Result<Container> Create(const std::string& ns, const Container& container);

  // Applies `container` to the stored container of the same ID under `paths` (see above),
  // validates the result and returns it. Errors: InvalidArgument (empty ID, unknown path,
  // immutable field, invalid result), NotFound.
  Result<Container> Update(const std::string& ns, const Container& container,
                           const std::vector<std::string>& paths);

  // Errors: NotFound.
  Status Delete(const std::string& ns, const std::string& id);

 private:
  Db& db_;
};

}  // namespace berth::metadata
