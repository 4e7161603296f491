// Images on the client side: an image's root filesystem as snapshots, worked out the way
// containerd's client does it (berthd only offers the pieces: Content, Snapshots, Diff.Apply):
// resolve the target to one platform's manifest, read the config's rootfs.diff_ids, derive
// the chain IDs, and unpack every layer that has no committed snapshot yet
// (Prepare "extract-..." → Diff.Apply → Commit <chain ID>).
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "client/client.h"
#include "client/platforms.h"
#include "common/status.h"
#include "github.com/containerd/containerd/api/types/descriptor.pb.h"

namespace berth::client {

// The identity of a stack of layers: chain[0] = diff[0];
// chain[i] = sha256(chain[i-1] + " " + diff[i]) (OCI image-spec's ChainID).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

struct ImageRootFs {
  containerd::types::Descriptor manifest;
  containerd::types::Descriptor config;
  std::vector<containerd::types::Descriptor> layers;  // the blobs, bottom first
  std::vector<std::string> diff_ids;                  // uncompressed digests, same order
  std::vector<std::string> chain_ids;                 // same order
  // The top of the chain: the snapshot the image's root filesystem is ("" with no layers).
  std::string chain_id() const { return chain_ids.empty() ? "" : chain_ids.back(); }
};

// Follows `target` (an index or a manifest) to the manifest for `platform` and reads its
// config. NotFound when no manifest matches or a blob is missing; Unimplemented for media
// types we cannot read (Docker schema 1).
Result<ImageRootFs> ResolveRootFs(const Client& client, const containerd::types::Descriptor& target,
                                  const Platform& platform);

// The image config document of `rootfs` (its "config" object holds Env, Cmd, Entrypoint,
// WorkingDir, User, Labels, StopSignal), read and verified against its digest.
Result<nlohmann::json> ReadImageConfig(const Client& client, const ImageRootFs& rootfs);

// Called after each layer: its index, whether it had to be unpacked (false: it was there).
using UnpackProgress = std::function<void(size_t index, bool applied)>;

// Unpacks the layers of `rootfs` that `snapshotter` does not have yet, every call made under
// `lease` (when set) so nothing is collected half-way. Labels the layer blobs
// `containerd.io/uncompressed` and the config `containerd.io/gc.ref.snapshot.<snapshotter>`
// (which keeps the chain alive as long as the image), as containerd's Unpack does.
Status Unpack(const Client& client, const ImageRootFs& rootfs, const std::string& snapshotter,
              const std::string& lease, const UnpackProgress& progress = {});

}  // namespace berth::client
