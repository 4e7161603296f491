// The differ roles (containerd: core/diff Applier and Comparer): applying a layer to mounts,
// and making a layer from two sets of mounts. Plain structs in and out, so they are tested and
// reused without gRPC; the Diff service only translates protos to these and back.
//
// Both work in a namespace's content store: Apply reads the layer blob from it, Compare writes
// the new layer into it under the caller's lease.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/mount.h"
#include "common/status.h"
#include "common/validate.h"
#include "diff/changes.h"

namespace berth::diff {

// An OCI descriptor: what a layer is, by type, digest and size.
struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
};

// Whose content a differ uses: the namespace (validated by the caller) and the lease ("" =
// none) new content is attached to. containerd carries both in the context.
struct Ctx {
  std::string ns;
  std::string lease;
};

// Applies a layer to a file system described by mounts. Thread-safe.
class Applier {
 public:
  virtual ~Applier() = default;
  // Unpacks `layer` (its media type and digest; the blob read from ctx.ns's content) onto
  // `mounts` and answers the uncompressed layer: {...layer.v1.tar, diffID, size}.
  // Errors: the content store's, wrapped "failed to get reader from content store";
  // Unimplemented (media type); InvalidArgument "no mounts to apply the diff to"; mount
  // errors; the extraction's, wrapped "failed to extract layer <digest>".
  virtual Result<Descriptor> Apply(const Ctx& ctx, const Descriptor& layer,
                                   const std::vector<Mount>& mounts) = 0;
};

struct CompareOptions {
  std::string media_type;  // of the layer to write; "" = kDefaultDiffMediaType (tar+gzip)
  std::string ref;         // ingest ref; "" = a generated one, aborted again on failure
  Labels labels;           // labels of the committed blob
  CancelFn cancelled;      // polled during the walk; true ends it with Canceled
};

// Makes the layer that takes one file system to another. Thread-safe.
class Comparer {
 public:
  virtual ~Comparer() = default;
  // Writes the layer taking `lower` to `upper` into ctx.ns's content store and answers its
  // descriptor (media type, digest and size of the stored blob). Errors: Unimplemented
  // "unsupported diff media type: <type>"; mount errors wrapped "failed to mount lower|upper";
  // the content store's and the walk's, wrapped as containerd wraps them.
  virtual Result<Descriptor> Compare(const Ctx& ctx, const std::vector<Mount>& lower,
                                     const std::vector<Mount>& upper,
                                     const CompareOptions& opts) = 0;
};

}  // namespace berth::diff
