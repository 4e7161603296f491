// Labels of namespaced objects (content, images, leases, ...), kept in one `labels` table,
// plus the field-mask rules every containerd Update method shares.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/validate.h"
#include "metadata/db.h"

namespace berth::metadata {

// Object kinds as stored in labels.kind.
inline constexpr char kKindContent[] = "content";
inline constexpr char kKindImage[] = "image";
inline constexpr char kKindLease[] = "lease";
inline constexpr char kKindContainer[] = "container";
// Snapshot labels use kind "snapshot/<snapshotter>".
inline constexpr char kKindSnapshotPrefix[] = "snapshot/";

Result<Labels> ReadObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                                std::string_view object);
// Replaces all labels of the object with `labels` (empty values are dropped).
Status WriteObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                         std::string_view object, const Labels& labels);
Status DeleteObjectLabels(Tx& tx, std::string_view ns, std::string_view kind,
                          std::string_view object);

// A field-mask edit of labels, as containerd's Update methods apply them:
//   no paths          → labels replaced by `incoming`
//   "labels"          → labels replaced by `incoming`
//   "labels.<key>"    → that key set to incoming[key], or deleted when absent/empty
// Other paths are returned in `other_paths` for the caller to handle or reject.
struct LabelMask {
  bool replace_all = false;
  std::vector<std::string> keys;
  std::vector<std::string> other_paths;
};
LabelMask ParseLabelMask(const std::vector<std::string>& paths);
// Applies `mask` to `current`; validates the resulting labels.
Result<Labels> ApplyLabelMask(const Labels& current, const Labels& incoming,
                              const LabelMask& mask);

// Next value of a named sequence (1, 2, ...), inside a write transaction.
Result<int64_t> NextSequence(Tx& tx, std::string_view name);

// Records `id` of `type` as a resource of the lease named in the request's
// `containerd-lease` header (no-op when `lease` is empty). NotFound "lease does not exist" when
// the namespace has no such lease — containerd fails the mutation in that case.
Status AttachToLease(Tx& tx, std::string_view ns, std::string_view lease, std::string_view type,
                     std::string_view id);

// Real-time now (common/clock.h); kept under this name for the stores and gc.
using ::berth::NowNanos;

}  // namespace berth::metadata
