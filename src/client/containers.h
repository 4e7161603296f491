// Containers from the client side: what containerd's client.NewContainer does for `ctr run` /
// `ctr containers create` with the usual options (WithNewSnapshot from an unpacked image, or
// WithRootFS of a host directory; WithNewSpec from spec.h; WithRuntime and runc options;
// image labels and stop signal), and the matching delete (snapshot, then record).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "client/client.h"
#include "client/image.h"
#include "client/spec.h"
#include "client/user.h"
#include "common/status.h"
#include "common/validate.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.pb.h"

namespace berth::client {

using Container = containerd::services::containers::v1::Container;

inline constexpr char kDefaultRuntime[] = "io.containerd.runc.v2";
inline constexpr char kDefaultSnapshotter[] = "overlayfs";
// The image's stop signal, copied to the container's labels (`ctr kill` reads it).
inline constexpr char kStopSignalLabel[] = "io.containerd.image.config.stop-signal";

struct NewContainerOptions {
  std::string id;
  // Exactly one of these: a host directory used as the root filesystem as it is (--rootfs), or
  // an image name whose layers are unpacked into `snapshotter` and prepared as snapshot <id>.
  std::string rootfs_dir;
  std::string image;
  std::string snapshotter = kDefaultSnapshotter;
  Platform platform = HostPlatform();
  // Called after each image layer: the image's layers, the index, whether it was unpacked now.
  std::function<void(const ImageRootFs& rootfs, size_t index, bool applied)> unpack_progress;

  std::string runtime = kDefaultRuntime;
  // runc shim options (containerd.runc.v1.Options); none are sent when all are unset.
  std::string runc_binary;
  std::string runc_root;
  bool runc_systemd_cgroup = false;

  // The spec's process and flags (args, env, cwd, mounts, tty, ...). id, ns, rootfs_path,
  // image_config and resolve_user are filled in by NewContainer.
  SpecOptions spec;
  // Container labels; they win over the image config's Labels (ctr's buildLabels).
  Labels labels;
};

// Creates the container record (and, for an image, unpacks it and prepares its snapshot under
// a temporary lease). On failure nothing is left behind. Returns the record as created.
// Errors: InvalidArgument (bad id, flags, spec, or an image USER out of range), NotFound (the
// image, a rootfs directory, a user), AlreadyExists (the id), and the services' errors.
Result<Container> NewContainer(const Client& client, NewContainerOptions opts);

Result<Container> GetContainer(const Client& client, const std::string& id);

// Removes the container's snapshot (a missing one is fine), then its record.
Status DeleteContainer(const Client& client, const Container& c);

// The image's User as ids, read from the image's layers as containerd does: a read-only view
// of the `chain` snapshot mounted on a private temporary directory for the time of the lookup.
// A purely numeric "uid:gid" needs no mount.
Result<UserIds> ResolveUserInImage(const Client& client, const std::string& snapshotter,
                                   const std::string& chain, const std::string& lease,
                                   const std::string& id, const std::string& user);

// Whether the container's OCI spec asks for a terminal.
bool SpecTerminal(const Container& c);

}  // namespace berth::client
