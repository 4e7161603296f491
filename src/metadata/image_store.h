// Images: named pointers to a root descriptor (an index or a manifest) in the content store.
//
// An image is only metadata — name, labels, target descriptor, timestamps. Its content is kept
// alive by GC through the target digest and the gc.ref labels of the blobs it reaches; deleting
// the image makes all of that collectable. Names are any non-empty string (ctr stores exactly
// what the user typed; CRI stores tag, digest and ID forms of one image).
//
// Semantics are containerd 1.6's metadata image store:
//   - Create validates (name non-empty, target digest parses, target size > 0, target media
//     type non-empty, labels ≤ 4096 bytes each) and refuses a taken name with AlreadyExists;
//   - Update edits by field mask — `labels`, `labels.<key>`, `target`, `annotations`,
//     `annotations.<key>` — or, with no mask, replaces everything but created_at;
//   - labels and annotations with empty values are never stored (setting one deletes it);
//   - created_at and updated_at are set here, UTC.
//
// Thread-safe: every method is one metadata transaction. Namespace names are validated by the
// caller.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/validate.h"
#include "metadata/db.h"

namespace berth::metadata {

// An OCI descriptor as images store it (the fields containerd keeps for an image target;
// urls and platform are not stored).
struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  bool operator==(const Descriptor&) const = default;
};

struct Image {
  std::string name;
  Labels labels;
  Descriptor target;
  int64_t created_at = 0;  // unix nanoseconds, UTC
  int64_t updated_at = 0;
};

class ImageStore {
 public:
  explicit ImageStore(Db& db) : db_(db) {}

  // Errors: NotFound.
  Result<Image> Get(const std::string& ns, const std::string& name) const;

  // Images of `ns` sorted by name, matching any of `filters` (fields `name`, `target.digest`,
  // `target.mediatype`, `labels.<key>`, `annotations.<key>`). Errors: InvalidArgument.
  Result<std::vector<Image>> List(const std::string& ns,
                                  std::span<const std::string> filters = {}) const;

  // Stores `image` (timestamps ignored and set now), making the namespace exist; returns what
  // was stored. Errors: InvalidArgument (validation), AlreadyExists.
  Result<Image> Create(const std::string& ns, const Image& image);

  // Applies `image` to the stored image of the same name under `paths` (empty = full replace,
  // keeping created_at), validates the result and returns it. Errors: InvalidArgument (empty
  // name, unknown path, invalid result), NotFound.
  Result<Image> Update(const std::string& ns, const Image& image,
                       const std::vector<std::string>& paths);

  // Errors: NotFound.
  Status Delete(const std::string& ns, const std::string& name);

  // Stores `json` as the target's annotations of image `name` as is, unchecked: tests use it to
  // see how reads treat a corrupt row. Errors: NotFound.
  Status SetRawAnnotationsForTest(const std::string& ns, const std::string& name,
                                  std::string_view json);

 private:
  Db& db_;
};

}  // namespace berth::metadata
