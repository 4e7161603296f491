// berth namespaces (ns): ls, create, rm, label — the Namespaces service.
#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/services/namespaces/v1/namespace.grpc.pb.h"

namespace berth::cli {
namespace {

namespace nsapi = containerd::services::namespaces::v1;

struct NamespaceRow {
  std::string name;
  Labels labels;
};

nlohmann::json ToJson(const NamespaceRow& ns) { return {{"name", ns.name}, {"labels", ns.labels}}; }

void PrintNamespaces(const Cli& cli, const std::vector<NamespaceRow>& rows, bool quiet) {
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& ns : rows) arr.push_back(quiet ? nlohmann::json(ns.name) : ToJson(ns));
    PrintJson(arr, std::cout);
    return;
  }
  if (quiet) {
    for (const auto& ns : rows) std::cout << ns.name << '\n';
    return;
  }
  Table table({"NAME", "LABELS"});
  for (const auto& ns : rows) table.AddRow({ns.name, JoinLabels(ns.labels)});
  table.Print(std::cout);
}

Result<std::unique_ptr<nsapi::Namespaces::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return nsapi::Namespaces::NewStub(client->channel());
}

Result<std::vector<NamespaceRow>> ListNamespaces(Cli& cli) {
  ASSIGN_OR_RETURN(auto stub, Stub(cli));
  ASSIGN_OR_RETURN(Client * client, cli.client());
  nsapi::ListNamespacesRequest req;
  nsapi::ListNamespacesResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->List(client->NewContext().get(), req, &resp)));
  std::vector<NamespaceRow> rows;
  for (const auto& ns : resp.namespaces()) rows.push_back({ns.name(), ToLabels(ns.labels())});
  std::ranges::sort(rows, {}, &NamespaceRow::name);
  return rows;
}

int RunList(Cli& cli, bool quiet) {
  auto rows = ListNamespaces(cli);
  if (!rows) return ReportError(rows.error());
  PrintNamespaces(cli, *rows, quiet);
  return 0;
}

int RunCreate(Cli& cli, const std::string& name, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  nsapi::CreateNamespaceRequest req;
  req.mutable_namespace_()->set_name(name);
  for (const auto& [k, v] : *labels) (*req.mutable_namespace_()->mutable_labels())[k] = v;
  nsapi::CreateNamespaceResponse resp;
  Client* client = *cli.client();
  if (Status s = FromGrpc((*stub)->Create(client->NewContext().get(), req, &resp)); !s.ok()) {
    return ReportError(s);
  }
  // Silent on success in a table, like ctr; scripts asking for JSON get the new namespace.
  if (cli.format() == Format::kJson) {
    PrintJson(ToJson({resp.namespace_().name(), ToLabels(resp.namespace_().labels())}), std::cout);
  }
  return 0;
}

int RunRemove(Cli& cli, const std::vector<std::string>& names) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  return RemoveEach(cli, names, [&](const std::string& name, size_t) {
    nsapi::DeleteNamespaceRequest req;
    req.set_name(name);
    google::protobuf::Empty resp;
    return FromGrpc((*stub)->Delete(client->NewContext().get(), req, &resp));
  });
}

int RunLabel(Cli& cli, const std::string& name, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  // Update would quietly create a missing namespace; a typo should not, so look first.
  auto all = ListNamespaces(cli);
  if (!all) return ReportError(all.error());
  auto it = std::ranges::find(*all, name, &NamespaceRow::name);
  if (it == all->end()) return ReportError(NotFound("namespace " + Quote(name)));
  NamespaceRow result = *it;
  if (!labels->empty()) {
    auto stub = Stub(cli);
    if (!stub) return ReportError(stub.error());
    nsapi::UpdateNamespaceRequest req;
    req.mutable_namespace_()->set_name(name);
    for (const auto& [k, v] : *labels) {
      // An empty value is left out of the map: with its path in the mask, that removes it.
      if (!v.empty()) (*req.mutable_namespace_()->mutable_labels())[k] = v;
      req.mutable_update_mask()->add_paths("labels." + k);
    }
    nsapi::UpdateNamespaceResponse resp;
    Client* client = *cli.client();
    if (Status s = FromGrpc((*stub)->Update(client->NewContext().get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    result.labels = ToLabels(resp.namespace_().labels());
  }
  if (cli.format() == Format::kJson) {
    PrintJson(ToJson(result), std::cout);
  } else {
    PrintNamespaces(cli, {result}, false);
  }
  return 0;
}

}  // namespace

void AddNamespacesCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("namespaces", "manage namespaces");
  group->alias("namespace");
  group->alias("ns");
  group->require_subcommand(1);

  // Options live in a shared_ptr: the callbacks outlive this function.
  struct Args {
    bool quiet = false;
    std::string name;
    std::vector<std::string> names;
    std::vector<std::string> labels;
  };
  auto args = std::make_shared<Args>();

  auto* ls = group->add_subcommand("ls", "list namespaces");
  ls->alias("list");
  ls->add_flag("-q,--quiet", args->quiet, "print only the names");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, args->quiet); });

  auto* create = group->add_subcommand("create", "create a namespace");
  create->add_option("name", args->name, "namespace name")->required();
  create->add_option("labels", args->labels, "labels as key=value");
  OnParsed(create, cli, [&cli, args] { return RunCreate(cli, args->name, args->labels); });

  auto* rm = group->add_subcommand("rm", "remove namespaces (they must be empty)");
  rm->alias("remove");
  rm->add_option("names", args->names, "namespace names")->required();
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->names); });

  auto* label = group->add_subcommand(
      "label", "set labels on a namespace (key=value; key= removes) and print them");
  label->add_option("name", args->name, "namespace name")->required();
  label->add_option("labels", args->labels, "labels as key=value");
  OnParsed(label, cli, [&cli, args] { return RunLabel(cli, args->name, args->labels); });
}

}  // namespace berth::cli
