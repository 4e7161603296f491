// berth images mount / unmount: an image's root filesystem on a directory of this host, as
// ctr does it — a lease named after the target holds a snapshot named after the target, on
// top of the image's unpacked layer chain (unpacked first when the snapshotter lacks it).
#include <google/protobuf/empty.pb.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "client/image.h"
#include "client/leases.h"
#include "client/mounts.h"
#include "client/snapshots.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::cli {
namespace {

namespace iapi = containerd::services::images::v1;
namespace sapi = containerd::services::snapshots::v1;

constexpr auto kLeaseLifetime = std::chrono::hours(24);

struct MountArgs {
  std::string image;
  std::string target;
  std::string snapshotter = "overlayfs";
  std::string platform;
  bool rw = false;
};

struct UnmountArgs {
  std::string target;
  std::string snapshotter = "overlayfs";
  bool rm = false;
};

// The snapshot named `key` on `parent`, writable or a view; one left by an earlier mount of
// the same target is reused. Sets `created` when this call made it.
Result<MountList> SnapshotFor(const Client& client, const std::string& snapshotter,
                              const std::string& key, const std::string& parent,
                              const std::string& lease, bool rw, bool& created) {
  auto stub = sapi::Snapshots::NewStub(client.channel());
  Status s;
  MountList mounts;
  if (rw) {
    sapi::PrepareSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(key);
    req.set_parent(parent);
    sapi::PrepareSnapshotResponse resp;
    s = FromGrpc(stub->Prepare(client.NewContext(lease).get(), req, &resp));
    mounts = resp.mounts();
  } else {
    sapi::ViewSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(key);
    req.set_parent(parent);
    sapi::ViewSnapshotResponse resp;
    s = FromGrpc(stub->View(client.NewContext(lease).get(), req, &resp));
    mounts = resp.mounts();
  }
  created = s.ok();
  if (s.code() == Code::kAlreadyExists) {
    sapi::MountsRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(key);
    sapi::MountsResponse resp;
    s = FromGrpc(stub->Mounts(client.NewContext(lease).get(), req, &resp));
    mounts = resp.mounts();
  }
  if (!s.ok()) return std::unexpected(s.Wrap("snapshot " + Quote(key)));
  return mounts;
}

int RunMount(Cli& cli, const MountArgs& a) {
  Result<Platform> platform =
      a.platform.empty() ? Result<Platform>(HostPlatform()) : ParsePlatform(a.platform);
  if (!platform) return ReportError(platform.error());
  auto target = MountTargetPath(a.target);
  if (!target) return ReportError(target.error());
  auto mounted = IsMountPoint(*target);
  if (!mounted) return ReportError(mounted.error());
  if (*mounted) {
    return ReportError(FailedPrecondition(*target +
                                          " is a mount point already (berth images "
                                          "unmount " +
                                          *target + " first)"));
  }
  auto client_or = cli.client();
  if (!client_or) return ReportError(client_or.error());
  const Client& client = **client_or;

  // The image first: an unknown name leaves nothing behind.
  auto images = iapi::Images::NewStub(client.channel());
  iapi::GetImageRequest get;
  get.set_name(a.image);
  iapi::GetImageResponse image;
  if (Status s = FromGrpc(images->Get(client.NewContext().get(), get, &image)); !s.ok()) {
    return ReportError(s);
  }

  // The lease holds everything made from here on: the unpacked layers until the image's config
  // references them, and the target's snapshot until `unmount --rm`. A lease left by an
  // earlier mount of this target is taken over, as ctr does.
  const std::string& lease = *target;
  auto created_lease = CreateLease(client, lease, kLeaseLifetime,
                                   {{kSnapshotRefLabel + a.snapshotter, *target}});
  Status ls = created_lease ? Status::Ok() : created_lease.error();
  if (!ls.ok() && ls.code() != Code::kAlreadyExists) return ReportError(ls.Wrap("create lease"));
  bool own_lease = ls.ok();
  auto fail = [&](const Status& s) {
    if (own_lease) {
      if (Status d = DeleteLease(client, lease); !d.ok()) PrintError(d.Wrap("clean up lease"));
    }
    return ReportError(s);
  };

  auto rootfs = ResolveRootFs(client, image.image().target(), *platform);
  if (!rootfs) return fail(rootfs.error().Wrap("image " + Quote(a.image)));
  bool tty = ::isatty(STDERR_FILENO) == 1;
  size_t unpacked = 0;
  Status us = Unpack(client, *rootfs, a.snapshotter, lease, [&](size_t i, bool applied) {
    if (!applied) return;
    ++unpacked;
    if (tty) {
      std::fprintf(stderr, "unpacked layer %zu/%zu %s (%s)\n", i + 1, rootfs->layers.size(),
                   rootfs->layers[i].digest().c_str(), HumanSize(rootfs->layers[i].size()).c_str());
    }
  });
  if (!us.ok()) return fail(us.Wrap("error unpacking image " + Quote(a.image)));

  bool created = false;
  auto mounts =
      SnapshotFor(client, a.snapshotter, *target, rootfs->chain_id(), lease, a.rw, created);
  if (!mounts) return fail(mounts.error());
  if (Status ms = MountAll(*mounts, *target); !ms.ok()) {
    if (created) {
      if (Status rs = RemoveSnapshot(client, a.snapshotter, *target);
          !rs.ok() && rs.code() != Code::kNotFound) {
        PrintError(rs.Wrap("clean up snapshot"));
      }
    }
    return fail(ms);
  }

  if (cli.format() == Format::kJson) {
    nlohmann::json mj = nlohmann::json::array();
    for (const auto& m : *mounts) {
      mj.push_back({{"type", m.type()},
                    {"source", m.source()},
                    {"options", std::vector<std::string>(m.options().begin(), m.options().end())}});
    }
    PrintJson({{"image", a.image},
               {"target", *target},
               {"snapshotter", a.snapshotter},
               {"snapshot", *target},
               {"lease", lease},
               {"platform", PlatformString(*platform)},
               {"manifest", rootfs->manifest.digest()},
               {"chain_id", rootfs->chain_id()},
               {"read_only", !a.rw},
               {"unpacked_layers", unpacked},
               {"mounts", mj}},
              std::cout);
  } else {
    std::cout << *target << '\n';
  }
  return 0;
}

int RunUnmount(Cli& cli, const UnmountArgs& a) {
  // No existence check: a target already gone is nothing to unmount, but --rm still applies.
  std::error_code ec;
  std::string target = std::filesystem::absolute(a.target, ec).lexically_normal().string();
  if (ec) return ReportError(StatusFromErrno(ec.value(), "unmount target " + a.target));
  if (target.size() > 1 && target.back() == '/') target.pop_back();
  if (Status s = UnmountAll(target); !s.ok()) return ReportError(s);
  if (a.rm) {
    auto client = cli.client();
    if (!client) return ReportError(client.error());
    // The snapshot before its lease: deleting the lease wakes the collector, which would
    // otherwise race us to the snapshot.
    if (Status s = RemoveSnapshot(**client, a.snapshotter, target);
        !s.ok() && s.code() != Code::kNotFound) {
      return ReportError(s.Wrap("error removing snapshot"));
    }
    if (Status s = DeleteLease(**client, target); !s.ok() && s.code() != Code::kNotFound) {
      return ReportError(s.Wrap("error deleting lease"));
    }
  }
  if (cli.format() == Format::kJson) {
    PrintJson({{"target", target}, {"removed", a.rm}}, std::cout);
  } else {
    std::cout << target << '\n';
  }
  return 0;
}

}  // namespace

void AddImagesMountCommands(CLI::App& group, Cli& cli) {
  auto margs = std::make_shared<MountArgs>();
  auto* mount = group.add_subcommand(
      "mount", "mount an image's root filesystem on TARGET (unpacks it first if needed)");
  mount->add_option("image", margs->image, "image name")->required();
  mount->add_option("target", margs->target, "existing directory to mount on")->required();
  mount->add_flag("--rw", margs->rw, "mount a writable snapshot (default: read-only view)");
  mount->add_option("--snapshotter", margs->snapshotter, "snapshotter: overlayfs or native")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();
  mount->add_option("--platform", margs->platform,
                    "platform to mount, os/arch[/variant] (default: this host's)");
  OnParsed(mount, cli, [&cli, margs] { return RunMount(cli, *margs); });

  auto uargs = std::make_shared<UnmountArgs>();
  auto* unmount = group.add_subcommand("unmount",
                                       "unmount TARGET (and with --rm drop its "
                                       "snapshot and lease)");
  unmount->alias("umount");
  unmount->add_option("target", uargs->target, "mounted directory")->required();
  unmount->add_flag("--rm", uargs->rm, "remove the snapshot and lease the mount made");
  unmount->add_option("--snapshotter", uargs->snapshotter, "snapshotter: overlayfs or native")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();
  OnParsed(unmount, cli, [&cli, uargs] { return RunUnmount(cli, *uargs); });
}

}  // namespace berth::cli
