#include "client/containers.h"

#include <google/protobuf/empty.pb.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "client/leases.h"
#include "client/mounts.h"
#include "client/snapshots.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace berth::client {
namespace {

namespace capi = containerd::services::containers::v1;
namespace iapi = containerd::services::images::v1;
namespace sapi = containerd::services::snapshots::v1;
using nlohmann::json;

constexpr char kRuncOptionsType[] = "containerd.runc.v1.Options";

// The image part of NewContainer: unpack under `lease`, prepare snapshot <id>, and fill in
// what the spec and the record take from the image.
Status FromImage(const Client& client, NewContainerOptions& o, const std::string& lease,
                 Container& c, Labels& labels) {
  auto images = iapi::Images::NewStub(client.channel());
  iapi::GetImageRequest get;
  get.set_name(o.image);
  iapi::GetImageResponse image;
  RETURN_IF_ERROR(FromGrpc(images->Get(client.NewContext().get(), get, &image))
                      .Wrap("image " + Quote(o.image)));
  ASSIGN_OR_RETURN(ImageRootFs rootfs, ResolveRootFs(client, image.image().target(), o.platform));
  ASSIGN_OR_RETURN(json config, ReadImageConfig(client, rootfs));
  json image_config = config.contains("config") ? config["config"] : json::object();
  if (!image_config.is_object()) image_config = json::object();
  o.spec.image_config = image_config;

  UnpackProgress progress;
  if (o.unpack_progress) {
    progress = [&](size_t i, bool applied) { o.unpack_progress(rootfs, i, applied); };
  }
  RETURN_IF_ERROR(Unpack(client, rootfs, o.snapshotter, lease, progress)
                      .Wrap("unpack " + Quote(o.image)));
  auto snaps = sapi::Snapshots::NewStub(client.channel());
  sapi::PrepareSnapshotRequest prep;
  prep.set_snapshotter(o.snapshotter);
  prep.set_key(o.id);
  prep.set_parent(rootfs.chain_id());
  sapi::PrepareSnapshotResponse prepared;
  RETURN_IF_ERROR(FromGrpc(snaps->Prepare(client.NewContext(lease).get(), prep, &prepared))
                      .Wrap("prepare snapshot " + Quote(o.id)));
  o.spec.resolve_user = [&client, snapshotter = o.snapshotter, lease, id = o.id,
                         chain = rootfs.chain_id()](const std::string& user) {
    return ResolveUserInImage(client, snapshotter, chain, lease, id, user);
  };
  c.set_image(o.image);
  c.set_snapshotter(o.snapshotter);
  c.set_snapshot_key(o.id);
  // Image config labels first; the caller's win (ctr's buildLabels).
  if (auto it = image_config.find("Labels"); it != image_config.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) labels[k] = v.get<std::string>();
    }
  }
  std::string stop = "SIGTERM";
  if (auto it = image_config.find("StopSignal");
      it != image_config.end() && it->is_string() && !it->get<std::string>().empty()) {
    stop = it->get<std::string>();
  }
  labels[kStopSignalLabel] = stop;
  return Status::Ok();
}

}  // namespace

Result<Container> NewContainer(const Client& client, NewContainerOptions o) {
  RETURN_IF_ERROR(ValidateIdentifier(o.id).Wrap("container id"));
  if (o.rootfs_dir.empty() == o.image.empty()) {
    return Err(Code::kInvalidArgument, "a container needs an image or a rootfs directory");
  }
  o.spec.id = o.id;
  o.spec.ns = client.ns();

  Container c;
  c.set_id(o.id);
  c.mutable_runtime()->set_name(o.runtime);
  if (!o.runc_binary.empty() || !o.runc_root.empty() || o.runc_systemd_cgroup) {
    containerd::runc::v1::Options opts;
    opts.set_binary_name(o.runc_binary);
    opts.set_root(o.runc_root);
    opts.set_systemd_cgroup(o.runc_systemd_cgroup);
    auto* any = c.mutable_runtime()->mutable_options();
    any->set_type_url(kRuncOptionsType);
    any->set_value(opts.SerializeAsString());
  }

  std::optional<TempLease> lease;
  Labels labels;
  if (!o.rootfs_dir.empty()) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(o.rootfs_dir, ec).lexically_normal();
    if (ec || !std::filesystem::is_directory(abs, ec)) {
      return Err(Code::kNotFound, "rootfs " + Quote(o.rootfs_dir) + " is not a directory");
    }
    std::string root = abs.string();
    if (root.size() > 1 && root.back() == '/') root.pop_back();
    o.spec.rootfs_path = root;
    o.spec.resolve_user = [root](const std::string& user) {
      return ResolveUserInRoot(root, user);
    };
  } else {
    // The lease holds the unpacked layers and the new snapshot until the record does.
    ASSIGN_OR_RETURN(TempLease l, TempLease::Create(client, "berth-run"));
    lease.emplace(std::move(l));
    Status st = FromImage(client, o, lease->id(), c, labels);
    if (!st.ok()) {
      if (!c.snapshot_key().empty()) (void)RemoveSnapshot(client, o.snapshotter, o.id);
      return std::unexpected(st);
    }
  }
  for (const auto& [k, v] : o.labels) labels[k] = v;
  for (const auto& [k, v] : labels) (*c.mutable_labels())[k] = v;

  auto remove_snapshot = [&] {
    // The snapshot is ours (Prepare made it); there is no record yet.
    if (!c.snapshot_key().empty()) (void)RemoveSnapshot(client, c.snapshotter(), c.snapshot_key());
  };
  auto spec = GenerateSpec(o.spec);
  if (!spec) {
    remove_snapshot();
    return std::unexpected(spec.error());
  }
  c.mutable_spec()->set_type_url(kSpecTypeUrl);
  c.mutable_spec()->set_value(spec->dump());

  auto containers = capi::Containers::NewStub(client.channel());
  capi::CreateContainerRequest req;
  *req.mutable_container() = c;
  capi::CreateContainerResponse resp;
  Status st = FromGrpc(containers->Create(client.NewContext().get(), req, &resp));
  if (!st.ok()) {
    remove_snapshot();
    return std::unexpected(st);
  }
  return resp.container();
}

Result<Container> GetContainer(const Client& client, const std::string& id) {
  auto containers = capi::Containers::NewStub(client.channel());
  capi::GetContainerRequest req;
  req.set_id(id);
  capi::GetContainerResponse resp;
  RETURN_IF_ERROR(FromGrpc(containers->Get(client.NewContext().get(), req, &resp)));
  return resp.container();
}

Status DeleteContainer(const Client& client, const Container& c) {
  if (!c.snapshot_key().empty() && !c.snapshotter().empty()) {
    Status st = RemoveSnapshot(client, c.snapshotter(), c.snapshot_key());
    if (!st.ok() && st.code() != Code::kNotFound) {
      return st.Wrap("remove snapshot " + Quote(c.snapshot_key()));
    }
  }
  auto containers = capi::Containers::NewStub(client.channel());
  capi::DeleteContainerRequest req;
  req.set_id(c.id());
  google::protobuf::Empty resp;
  return FromGrpc(containers->Delete(client.NewContext().get(), req, &resp));
}

Result<UserIds> ResolveUserInImage(const Client& client, const std::string& snapshotter,
                                   const std::string& chain, const std::string& lease,
                                   const std::string& id, const std::string& user) {
  // Out-of-range numbers fail here, before anything is mounted (CVE-2024-40635).
  ASSIGN_OR_RETURN(std::optional<UserIds> numeric, NumericUserIds(user));
  if (numeric) return *numeric;
  char tmpl[] = "/tmp/berth-user-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return std::unexpected(StatusFromErrno(errno, "mkdtemp"));
  std::string dir = tmpl;
  std::string key = "berth-user-" + id + "-" + std::to_string(::getpid());
  auto snaps = sapi::Snapshots::NewStub(client.channel());
  sapi::ViewSnapshotRequest req;
  req.set_snapshotter(snapshotter);
  req.set_key(key);
  req.set_parent(chain);
  sapi::ViewSnapshotResponse view;
  Status st = FromGrpc(snaps->View(client.NewContext(lease).get(), req, &view));
  Result<UserIds> out = std::unexpected(st);
  if (st.ok()) {
    st = MountAll(view.mounts(), dir);
    if (st.ok()) {
      out = ResolveUserInRoot(dir, user);
      // A mount we cannot undo is worse than a user we cannot name: report it.
      if (Status u = UnmountAll(dir); !u.ok()) out = std::unexpected(u.Wrap("unmount " + dir));
    } else {
      out = std::unexpected(st);
    }
    (void)RemoveSnapshot(client, snapshotter, key);
  }
  ::rmdir(dir.c_str());
  if (!out) return std::unexpected(out.error().Wrap("image user " + Quote(user)));
  return out;
}

bool SpecTerminal(const Container& c) {
  json spec = json::parse(c.spec().value(), nullptr, false);
  return !spec.is_discarded() && spec.is_object() && spec.contains("process") &&
         spec["process"].is_object() && spec["process"].value("terminal", false);
}

}  // namespace berth::client
