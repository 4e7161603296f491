// berth snapshots: ls, tree, info, usage, mounts, prepare, view, commit, rm, label — the
// Snapshots service, one snapshotter at a time (--snapshotter, default overlayfs).
#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "client/mounts.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::cli {
namespace {

namespace sapi = containerd::services::snapshots::v1;

constexpr char kGcRootLabel[] = "containerd.io/gc.root";

Result<std::unique_ptr<sapi::Snapshots::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return sapi::Snapshots::NewStub(client->channel());
}

std::string KindName(sapi::Kind k) {
  switch (k) {
    case sapi::VIEW:
      return "View";
    case sapi::ACTIVE:
      return "Active";
    case sapi::COMMITTED:
      return "Committed";
    default:
      return "Unknown";
  }
}

nlohmann::json InfoJson(const sapi::Info& info) {
  return {{"name", info.name()},
          {"parent", info.parent()},
          {"kind", KindName(info.kind())},
          {"created_at", TimestampJson(info.created_at())},
          {"updated_at", TimestampJson(info.updated_at())},
          {"labels", ToLabels(info.labels())}};
}

nlohmann::json MountsJson(const MountList& mounts) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& m : mounts) {
    arr.push_back({{"type", m.type()},
                   {"source", m.source()},
                   {"options", std::vector<std::string>(m.options().begin(), m.options().end())}});
  }
  return arr;
}

std::string Dash(const std::string& s) { return s.empty() ? "-" : s; }

void PrintInfos(const Cli& cli, const std::vector<sapi::Info>& infos, bool quiet) {
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& i : infos) arr.push_back(quiet ? nlohmann::json(i.name()) : InfoJson(i));
    PrintJson(arr, std::cout);
    return;
  }
  if (quiet) {
    for (const auto& i : infos) std::cout << i.name() << '\n';
    return;
  }
  Table table({"KEY", "PARENT", "KIND", "AGE", "LABELS"});
  for (const auto& i : infos) {
    table.AddRow({i.name(), Dash(i.parent()), KindName(i.kind()), AgeOf(i.created_at()),
                  Dash(JoinLabels(ToLabels(i.labels())))});
  }
  table.Print(std::cout);
}

Result<std::vector<sapi::Info>> ListAll(Cli& cli, const std::string& snapshotter,
                                        const std::vector<std::string>& filters) {
  ASSIGN_OR_RETURN(auto stub, Stub(cli));
  ASSIGN_OR_RETURN(Client * client, cli.client());
  sapi::ListSnapshotsRequest req;
  req.set_snapshotter(snapshotter);
  for (const auto& f : filters) req.add_filters(f);
  auto ctx = client->NewContext();
  auto reader = stub->List(ctx.get(), req);
  std::vector<sapi::Info> infos;
  sapi::ListSnapshotsResponse resp;
  while (reader->Read(&resp)) {
    for (auto& i : *resp.mutable_info()) infos.push_back(std::move(i));
  }
  RETURN_IF_ERROR(FromGrpc(reader->Finish()));
  std::ranges::sort(infos, {}, &sapi::Info::name);
  return infos;
}

Result<sapi::Info> StatSnapshot(Cli& cli, sapi::Snapshots::Stub& stub,
                                const std::string& snapshotter, const std::string& key) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  sapi::StatSnapshotRequest req;
  req.set_snapshotter(snapshotter);
  req.set_key(key);
  sapi::StatSnapshotResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub.Stat(client->NewContext().get(), req, &resp)));
  return resp.info();
}

int RunList(Cli& cli, const std::string& snapshotter, const std::vector<std::string>& filters,
            bool quiet) {
  auto infos = ListAll(cli, snapshotter, filters);
  if (!infos) return ReportError(infos.error());
  PrintInfos(cli, *infos, quiet);
  return 0;
}

// Parent → children, every level sorted by name. A snapshot whose parent is not listed is
// a root too (ctr draws a placeholder; there is nothing to say about it).
class Tree {
 public:
  explicit Tree(const std::vector<sapi::Info>& infos) {
    for (const auto& i : infos) by_name_[i.name()] = &i;
    for (const auto& i : infos) {
      if (!i.parent().empty() && by_name_.contains(i.parent())) {
        children_[i.parent()].push_back(&i);
      } else {
        roots_.push_back(&i);
      }
    }
  }

  nlohmann::json Json() const {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto* r : roots_) arr.push_back(NodeJson(*r));
    return arr;
  }

  void Print(std::ostream& out) const {
    for (const auto* r : roots_) {
      out << Label(*r) << '\n';
      PrintChildren(out, r->name(), "");
    }
  }

 private:
  static std::string Label(const sapi::Info& i) {
    return i.name() + " (" + KindName(i.kind()) + ")";
  }

  const std::vector<const sapi::Info*>& ChildrenOf(const std::string& name) const {
    static const std::vector<const sapi::Info*> kNone;
    auto it = children_.find(name);
    return it == children_.end() ? kNone : it->second;
  }

  nlohmann::json NodeJson(const sapi::Info& i) const {
    nlohmann::json children = nlohmann::json::array();
    for (const auto* c : ChildrenOf(i.name())) children.push_back(NodeJson(*c));
    return {{"name", i.name()}, {"kind", KindName(i.kind())}, {"children", children}};
  }

  void PrintChildren(std::ostream& out, const std::string& name, const std::string& indent) const {
    const auto& kids = ChildrenOf(name);
    for (size_t k = 0; k < kids.size(); ++k) {
      bool last = k + 1 == kids.size();
      out << indent << (last ? "└── " : "├── ") << Label(*kids[k]) << '\n';
      PrintChildren(out, kids[k]->name(), indent + (last ? "    " : "│   "));
    }
  }

  std::map<std::string, const sapi::Info*> by_name_;
  std::map<std::string, std::vector<const sapi::Info*>> children_;
  std::vector<const sapi::Info*> roots_;
};

int RunTree(Cli& cli, const std::string& snapshotter) {
  auto infos = ListAll(cli, snapshotter, {});
  if (!infos) return ReportError(infos.error());
  Tree tree(*infos);
  if (cli.format() == Format::kJson) {
    PrintJson(tree.Json(), std::cout);
  } else {
    tree.Print(std::cout);
  }
  return 0;
}

int RunInfo(Cli& cli, const std::string& snapshotter, const std::string& key) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  auto info = StatSnapshot(cli, **stub, snapshotter, key);
  if (!info) return ReportError(info.error());
  // JSON in either format, as ctr prints it: everything there is to know about one snapshot.
  PrintJson(InfoJson(*info), std::cout);
  return 0;
}

int RunUsage(Cli& cli, const std::string& snapshotter, const std::vector<std::string>& keys,
             bool bytes) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  std::vector<std::string> names = keys;
  bool all = names.empty();
  if (all) {
    auto infos = ListAll(cli, snapshotter, {});
    if (!infos) return ReportError(infos.error());
    for (const auto& i : *infos) names.push_back(i.name());
  }
  int code = 0;
  nlohmann::json arr = nlohmann::json::array();
  Table table({"KEY", "SIZE", "INODES"});
  for (const auto& name : names) {
    sapi::UsageRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(name);
    sapi::UsageResponse resp;
    if (Status s = FromGrpc((*stub)->Usage(client->NewContext().get(), req, &resp)); !s.ok()) {
      // Listed a moment ago, removed since: not worth a failure.
      if (all && s.code() == Code::kNotFound) continue;
      PrintError(s);
      code = 1;
      continue;
    }
    arr.push_back({{"key", name}, {"size", resp.size()}, {"inodes", resp.inodes()}});
    table.AddRow({name, bytes ? std::to_string(resp.size()) : HumanSize(resp.size()),
                  std::to_string(resp.inodes())});
  }
  if (cli.format() == Format::kJson) {
    PrintJson(arr, std::cout);
  } else {
    table.Print(std::cout);
  }
  return code;
}

int PrintMounts(Cli& cli, const MountList& mounts, const std::string& target) {
  if (cli.format() == Format::kJson) {
    PrintJson(MountsJson(mounts), std::cout);
  } else if (!mounts.empty()) {
    std::cout << MountCommands(mounts, target) << '\n';
  }
  return 0;
}

int RunMounts(Cli& cli, const std::string& snapshotter, const std::string& target,
              const std::string& key) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  sapi::MountsRequest req;
  req.set_snapshotter(snapshotter);
  req.set_key(key);
  sapi::MountsResponse resp;
  auto ctx = (*cli.client())->NewContext();
  if (Status s = FromGrpc((*stub)->Mounts(ctx.get(), req, &resp)); !s.ok()) return ReportError(s);
  return PrintMounts(cli, resp.mounts(), target);
}

struct PrepareArgs {
  std::string key;
  std::string parent;
  std::string target;
  std::vector<std::string> labels;
  bool print_mounts = false;  // ctr's --mounts
  bool mount = false;
};

int RunPrepare(Cli& cli, const std::string& snapshotter, const PrepareArgs& a, bool view) {
  auto labels = ParseLabelArgs(a.labels);
  if (!labels) return ReportError(labels.error());
  std::string target = a.target;
  if (a.mount) {
    if (target.empty()) return ReportError(InvalidArgument("--mount needs --target"));
    auto t = MountTargetPath(target);
    if (!t) return ReportError(t.error());
    target = *t;
  }
  // A GC root, as ctr labels the snapshots it prepares. ctr leaves views unlabelled, so the
  // next collection takes them; here a view stays until removed too.
  labels->try_emplace(kGcRootLabel,
                      FormatRfc3339(std::chrono::system_clock::now(), /*with_fraction=*/false));
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  MountList mounts;
  Status s;
  if (view) {
    sapi::ViewSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(a.key);
    req.set_parent(a.parent);
    for (const auto& [k, v] : *labels) (*req.mutable_labels())[k] = v;
    sapi::ViewSnapshotResponse resp;
    s = FromGrpc((*stub)->View(client->NewContext().get(), req, &resp));
    mounts = resp.mounts();
  } else {
    sapi::PrepareSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(a.key);
    req.set_parent(a.parent);
    for (const auto& [k, v] : *labels) (*req.mutable_labels())[k] = v;
    sapi::PrepareSnapshotResponse resp;
    s = FromGrpc((*stub)->Prepare(client->NewContext().get(), req, &resp));
    mounts = resp.mounts();
  }
  if (!s.ok()) return ReportError(s);

  if (a.mount) {
    if (Status ms = MountAll(mounts, target); !ms.ok()) {
      // Leave nothing behind for a mount that never happened.
      sapi::RemoveSnapshotRequest rm;
      rm.set_snapshotter(snapshotter);
      rm.set_key(a.key);
      google::protobuf::Empty e;
      if (Status rs = FromGrpc((*stub)->Remove(client->NewContext().get(), rm, &e)); !rs.ok()) {
        PrintError(rs.Wrap("clean up snapshot " + Quote(a.key)));
      }
      return ReportError(ms);
    }
  }

  if (cli.format() == Format::kJson) {
    nlohmann::json j = {{"key", a.key},
                        {"parent", a.parent},
                        {"kind", view ? "View" : "Active"},
                        {"mounts", MountsJson(mounts)}};
    if (!target.empty()) j["target"] = target;
    j["mounted"] = a.mount;
    PrintJson(j, std::cout);
    return 0;
  }
  bool printed = false;
  if (a.mount) {
    std::cout << target << '\n';
    printed = true;
  } else if (!target.empty()) {
    if (!mounts.empty()) std::cout << MountCommands(mounts, target) << '\n';
    printed = true;
  }
  if (a.print_mounts) {
    PrintJson(MountsJson(mounts), std::cout);
    printed = true;
  }
  if (!printed) std::cout << a.key << '\n';
  return 0;
}

int RunCommit(Cli& cli, const std::string& snapshotter, const std::string& name,
              const std::string& key, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  labels->try_emplace(kGcRootLabel,
                      FormatRfc3339(std::chrono::system_clock::now(), /*with_fraction=*/false));
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  sapi::CommitSnapshotRequest req;
  req.set_snapshotter(snapshotter);
  req.set_name(name);
  req.set_key(key);
  for (const auto& [k, v] : *labels) (*req.mutable_labels())[k] = v;
  google::protobuf::Empty resp;
  if (Status s = FromGrpc((*stub)->Commit(client->NewContext().get(), req, &resp)); !s.ok()) {
    return ReportError(s);
  }
  if (cli.format() == Format::kJson) {
    auto info = StatSnapshot(cli, **stub, snapshotter, name);
    if (!info) return ReportError(info.error());
    PrintJson(InfoJson(*info), std::cout);
  } else {
    std::cout << name << '\n';
  }
  return 0;
}

int RunRemove(Cli& cli, const std::string& snapshotter, const std::vector<std::string>& keys) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  return RemoveEach(cli, keys, [&](const std::string& key, size_t) {
    sapi::RemoveSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.set_key(key);
    google::protobuf::Empty resp;
    return FromGrpc((*stub)->Remove(client->NewContext().get(), req, &resp));
  });
}

int RunLabel(Cli& cli, const std::string& snapshotter, const std::string& key,
             const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  sapi::Info result;
  if (labels->empty()) {
    auto info = StatSnapshot(cli, **stub, snapshotter, key);
    if (!info) return ReportError(info.error());
    result = std::move(*info);
  } else {
    sapi::UpdateSnapshotRequest req;
    req.set_snapshotter(snapshotter);
    req.mutable_info()->set_name(key);
    for (const auto& [k, v] : *labels) {
      // An empty value is left out of the map: with its path in the mask, that removes it.
      if (!v.empty()) (*req.mutable_info()->mutable_labels())[k] = v;
      req.mutable_update_mask()->add_paths("labels." + k);
    }
    sapi::UpdateSnapshotResponse resp;
    auto ctx = (*cli.client())->NewContext();
    if (Status s = FromGrpc((*stub)->Update(ctx.get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    result = resp.info();
  }
  if (cli.format() == Format::kJson) {
    PrintJson(InfoJson(result), std::cout);
  } else {
    PrintInfos(cli, {result}, false);
  }
  return 0;
}

}  // namespace

void AddSnapshotsCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("snapshots", "manage snapshots (filesystem layers)");
  group->alias("snapshot");
  group->require_subcommand(1);

  struct Args {
    std::string snapshotter = "overlayfs";
    bool quiet = false;
    bool bytes = false;
    std::string key;
    std::string name;
    std::vector<std::string> list;
    PrepareArgs prepare;
  };
  auto args = std::make_shared<Args>();

  group->add_option("--snapshotter", args->snapshotter, "snapshotter: overlayfs or native")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();

  auto* ls = group->add_subcommand(
      "ls",
      "list snapshots (filters: name==..., parent==..., kind==active|view|committed, labels.k==v)");
  ls->alias("list");
  ls->add_option("filters", args->list, "containerd filters");
  ls->add_flag("-q,--quiet", args->quiet, "print only the keys");
  OnParsed(ls, cli,
           [&cli, args] { return RunList(cli, args->snapshotter, args->list, args->quiet); });

  auto* tree = group->add_subcommand("tree", "show snapshots as a tree of parents and children");
  OnParsed(tree, cli, [&cli, args] { return RunTree(cli, args->snapshotter); });

  auto* info = group->add_subcommand("info", "print everything about one snapshot (JSON)");
  info->add_option("key", args->key, "snapshot key")->required();
  OnParsed(info, cli, [&cli, args] { return RunInfo(cli, args->snapshotter, args->key); });

  auto* usage = group->add_subcommand("usage", "disk usage of snapshots (all, or the given keys)");
  usage->add_option("keys", args->list, "snapshot keys");
  usage->add_flag("-b,--bytes", args->bytes, "sizes in bytes");
  OnParsed(usage, cli,
           [&cli, args] { return RunUsage(cli, args->snapshotter, args->list, args->bytes); });

  auto* mounts = group->add_subcommand(
      "mounts", "print the mount commands that would mount an active snapshot on TARGET");
  mounts->alias("mount");
  mounts->alias("m");
  mounts->add_option("target", args->name, "where it would be mounted")->required();
  mounts->add_option("key", args->key, "snapshot key")->required();
  OnParsed(mounts, cli,
           [&cli, args] { return RunMounts(cli, args->snapshotter, args->name, args->key); });

  for (bool view : {false, true}) {
    auto* cmd =
        view ? group->add_subcommand("view", "create a read-only snapshot of a committed one")
             : group->add_subcommand("prepare",
                                     "create an active (writable) snapshot, on a committed "
                                     "parent or empty");
    cmd->add_option("key", args->prepare.key, "new snapshot's key")->required();
    cmd->add_option("parent", args->prepare.parent, "committed parent snapshot");
    cmd->add_option("-t,--target", args->prepare.target,
                    "print the mount commands for this target (or mount there: --mount)");
    cmd->add_flag("--mounts", args->prepare.print_mounts, "print the mounts as JSON");
    cmd->add_flag("--mount", args->prepare.mount,
                  "mount it on --target (undo with `berth images unmount TARGET`)");
    cmd->add_option("--label", args->prepare.labels, "label it: key=value (repeatable)")
        ->allow_extra_args(false);
    OnParsed(cmd, cli, [&cli, args, view] {
      return RunPrepare(cli, args->snapshotter, args->prepare, view);
    });
  }

  auto* commit =
      group->add_subcommand("commit", "commit an active snapshot KEY as the snapshot NAME");
  commit->add_option("name", args->name, "committed snapshot's name")->required();
  commit->add_option("key", args->key, "active snapshot's key")->required();
  commit->add_option("--label", args->list, "label it: key=value (repeatable)")
      ->allow_extra_args(false);
  OnParsed(commit, cli, [&cli, args] {
    return RunCommit(cli, args->snapshotter, args->name, args->key, args->list);
  });

  auto* rm = group->add_subcommand("rm", "remove snapshots (children first)");
  rm->alias("remove");
  rm->alias("delete");
  rm->alias("del");
  rm->add_option("keys", args->list, "snapshot keys")->required();
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->snapshotter, args->list); });

  auto* label = group->add_subcommand(
      "label", "set labels on a snapshot (key=value; key= removes) and print it");
  label->add_option("key", args->key, "snapshot key")->required();
  label->add_option("labels", args->list, "labels as key=value");
  OnParsed(label, cli,
           [&cli, args] { return RunLabel(cli, args->snapshotter, args->key, args->list); });
}

}  // namespace berth::cli
