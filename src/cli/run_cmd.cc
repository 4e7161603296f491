// berth run and berth create (ctr's run/): flags → client::NewContainer, then for `run`
// client::RunTask (the task in the foreground, or detached).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "client/containers.h"
#include "client/tasks.h"

namespace berth::cli {
namespace {

using nlohmann::json;

struct ContainerFlags {
  std::vector<std::string> env;
  std::string cwd;
  bool tty = false;
  bool rootfs = false;  // the first argument is a host directory, not an image
  std::string runtime = kDefaultRuntime;
  std::string snapshotter = kDefaultSnapshotter;
  std::string platform;
  std::vector<std::string> mounts;
  std::vector<std::string> labels;
  bool net_host = false;
  bool privileged = false;
  bool read_only = false;
  std::string runc_binary;
  std::string runc_root;
  bool runc_systemd_cgroup = false;
};

struct RunFlags {
  ContainerFlags c;
  bool rm = false;
  bool detach = false;
  std::string fifo_dir;
  std::string ref;  // image, or the rootfs directory with --rootfs
  std::string id;
  // Set when parsed, from the arguments left after REF and ID.
  std::vector<std::string> args;
};

// The flags as NewContainer's options.
Result<NewContainerOptions> ContainerOptions(const RunFlags& f) {
  NewContainerOptions o;
  o.id = f.id;
  (f.c.rootfs ? o.rootfs_dir : o.image) = f.ref;
  o.snapshotter = f.c.snapshotter;
  if (!f.c.platform.empty()) {
    ASSIGN_OR_RETURN(o.platform, ParsePlatform(f.c.platform));
  }
  o.runtime = f.c.runtime;
  o.runc_binary = f.c.runc_binary;
  o.runc_root = f.c.runc_root;
  o.runc_systemd_cgroup = f.c.runc_systemd_cgroup;
  ASSIGN_OR_RETURN(o.labels, ParseLabelArgs(f.c.labels));
  o.spec.args = f.args;
  o.spec.env = f.c.env;
  o.spec.cwd = f.c.cwd;
  o.spec.tty = f.c.tty;
  o.spec.read_only = f.c.read_only;
  o.spec.net_host = f.c.net_host;
  o.spec.privileged = f.c.privileged;
  o.spec.annotations = o.labels;
  for (const auto& m : f.c.mounts) {
    ASSIGN_OR_RETURN(json mj, ParseMountFlag(m));
    o.spec.mounts.push_back(std::move(mj));
  }
  return o;
}

int RunRun(Cli& cli, RunFlags& f, bool create_only) {
  if (f.rm && f.detach) {
    return ReportError(InvalidArgument("--rm and --detach cannot be used together"));
  }
  auto opts = ContainerOptions(f);
  if (!opts) return ReportError(opts.error());
  if (::isatty(STDERR_FILENO) == 1) {
    opts->unpack_progress = [](const ImageRootFs& rootfs, size_t i, bool applied) {
      if (!applied) return;
      std::fprintf(stderr, "unpacked layer %zu/%zu %s (%s)\n", i + 1, rootfs.layers.size(),
                   rootfs.layers[i].digest().c_str(), HumanSize(rootfs.layers[i].size()).c_str());
    };
  }
  // Before any gRPC channel exists (SignalForwarder).
  SignalForwarder forwarder([](const Status& s) { PrintError(s); });
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto c = NewContainer(**client, std::move(*opts));
  if (!c) return ReportError(c.error());
  if (create_only) {
    if (cli.format() == Format::kJson) {
      PrintJson({{"id", f.id}}, std::cout);
    } else {
      std::cout << f.id << '\n';
    }
    return 0;
  }
  RunTaskOptions ro;
  ro.detach = f.detach;
  ro.remove = f.rm;
  ro.fifo_root = FifoRoot(cli, f.fifo_dir);
  ro.warn = [](const Status& s) { PrintError(s); };
  auto status = RunTask(**client, forwarder, *c, ro);
  if (!status) return ReportError(status.error());
  return static_cast<int>(*status);
}

void AddContainerFlags(CLI::App* cmd, ContainerFlags& c) {
  cmd->add_option("-e,--env", c.env, "environment variable KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--cwd", c.cwd, "working directory of the process");
  cmd->add_flag("-t,--tty", c.tty, "give the process a terminal");
  cmd->add_flag("--rootfs", c.rootfs,
                "the first argument is a root filesystem directory, not an image");
  cmd->add_option("--runtime", c.runtime, "runtime (shim) name")->capture_default_str();
  cmd->add_option("--snapshotter", c.snapshotter, "snapshotter for the image's rootfs")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();
  cmd->add_option("--platform", c.platform,
                  "image platform os/arch[/variant] (default: this host)");
  cmd->add_option("--mount", c.mounts,
                  "extra mount, e.g. type=bind,src=/host,dst=/ctr,options=rbind:ro (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--label", c.labels, "container label key=value (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--net-host", c.net_host, "share the host's network namespace");
  cmd->add_flag("--privileged", c.privileged,
                "all capabilities, all devices allowed, no masked paths");
  cmd->add_flag("--read-only", c.read_only, "mount the root filesystem read-only");
  cmd->add_option("--runc-binary", c.runc_binary, "runc binary the runc shim should use");
  cmd->add_option("--runc-root", c.runc_root, "runc's state root (runc shim option)");
  cmd->add_flag("--runc-systemd-cgroup", c.runc_systemd_cgroup, "runc shim: systemd cgroups");
}

}  // namespace

void AddRunCommands(CLI::App& app, Cli& cli) {
  for (bool create : {false, true}) {
    auto f = std::make_shared<RunFlags>();
    auto* cmd = app.add_subcommand(
        create ? "create" : "run",
        create ? "create a container from an image (or --rootfs DIR) without starting it"
               : "run a container from an image (or --rootfs DIR)");
    SetUsage(cmd, "[OPTIONS] IMAGE ID [COMMAND [ARG...]]\n       " + std::string("berth ") +
                      (create ? "create" : "run") +
                      " [OPTIONS] --rootfs DIR ID COMMAND [ARG...]");
    AddContainerFlags(cmd, f->c);
    if (!create) {
      cmd->add_flag("--rm", f->rm, "remove the container when the process exits");
      cmd->add_flag("-d,--detach", f->detach, "start the task and return");
      cmd->add_option("--fifo-dir", f->fifo_dir, "directory for the stdio FIFOs");
    }
    cmd->add_option("IMAGE", f->ref, "image name, or a directory with --rootfs")->required();
    cmd->add_option("ID", f->id, "container ID")->required();
    TakeArgv(cmd);
    OnParsed(cmd, cli, [&cli, f, cmd, create] {
      f->args = cmd->remaining();
      return RunRun(cli, *f, create);
    });
  }
}

}  // namespace berth::cli
