// berth containers (c): ls, info, rm, label — the Containers service (container records; the
// running side, tasks, is elsewhere).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace berth::cli {
namespace {

namespace capi = containerd::services::containers::v1;
namespace sapi = containerd::services::snapshots::v1;
namespace tapi = containerd::services::tasks::v1;

// OCI runtime-spec types travel as JSON inside the Any (Spec, Process, LinuxResources, ...).
constexpr std::string_view kOciSpecTypes = "types.containerd.io/opencontainers/runtime-spec/1/";

Result<std::unique_ptr<capi::Containers::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return capi::Containers::NewStub(client->channel());
}

// A protobuf message type this binary knows, by the name at the end of a type URL.
const google::protobuf::Message* KnownPrototype(const std::string& type_url) {
  // Referenced so the linker keeps runc's options (the runtime options ctr and dockerd send)
  // and their descriptor lands in the generated pool.
  static const google::protobuf::Descriptor* const kLinked[] = {
      containerd::runc::v1::Options::descriptor()};
  (void)kLinked;
  std::string name = type_url.substr(type_url.find_last_of('/') + 1);
  const auto* d = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name);
  if (!d) return nullptr;
  return google::protobuf::MessageFactory::generated_factory()->GetPrototype(d);
}

// An Any as {"type_url", "value"}: the value decoded (JSON for OCI types, proto JSON for
// protobuf types we know), else base64 as Go's encoding/json prints bytes.
nlohmann::json AnyJson(const google::protobuf::Any& any) {
  nlohmann::json out = {{"type_url", any.type_url()}, {"value", Base64(any.value())}};
  if (std::string_view(any.type_url()).starts_with(kOciSpecTypes)) {
    auto doc = nlohmann::json::parse(any.value(), nullptr, /*allow_exceptions=*/false);
    if (!doc.is_discarded()) out["value"] = std::move(doc);
    return out;
  }
  if (const auto* proto = KnownPrototype(any.type_url())) {
    std::unique_ptr<google::protobuf::Message> m(proto->New());
    std::string text;
    google::protobuf::util::JsonPrintOptions opts;
    opts.preserve_proto_field_names = true;
    if (m->ParseFromString(any.value()) &&
        google::protobuf::util::MessageToJsonString(*m, &text, opts).ok()) {
      auto doc = nlohmann::json::parse(text, nullptr, false);
      if (!doc.is_discarded()) out["value"] = std::move(doc);
    }
  }
  return out;
}

// The spec decoded to the OCI document itself when it is one (as `ctr c info` prints it).
nlohmann::json SpecJson(const capi::Container& c) {
  if (!c.has_spec()) return nullptr;
  nlohmann::json any = AnyJson(c.spec());
  if (std::string_view(c.spec().type_url()).starts_with(kOciSpecTypes) &&
      !any["value"].is_string()) {
    return any["value"];
  }
  return any;
}

nlohmann::json ContainerJson(const capi::Container& c) {
  nlohmann::json extensions = nlohmann::json::object();
  for (const auto& [name, any] : c.extensions()) extensions[name] = AnyJson(any);
  nlohmann::json runtime = {{"name", c.runtime().name()}, {"options", nullptr}};
  if (c.runtime().has_options()) runtime["options"] = AnyJson(c.runtime().options());
  return {{"id", c.id()},
          {"labels", ToLabels(c.labels())},
          {"image", c.image()},
          {"runtime", runtime},
          {"spec", SpecJson(c)},
          {"snapshotter", c.snapshotter()},
          {"snapshot_key", c.snapshot_key()},
          {"created_at", TimestampJson(c.created_at())},
          {"updated_at", TimestampJson(c.updated_at())},
          {"extensions", extensions}};
}

// ListStream (one container per message), or List from a daemon without it, as the Go client.
Result<std::vector<capi::Container>> ListContainers(Cli& cli, capi::Containers::Stub& stub,
                                                    const std::vector<std::string>& filters) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  capi::ListContainersRequest req;
  for (const auto& f : filters) req.add_filters(f);
  std::vector<capi::Container> out;
  {
    auto ctx = client->NewContext();
    auto reader = stub.ListStream(ctx.get(), req);
    capi::ListContainerMessage msg;
    while (reader->Read(&msg)) out.push_back(msg.container());
    Status s = FromGrpc(reader->Finish());
    if (s.ok()) return out;
    if (s.code() != Code::kUnimplemented) return std::unexpected(s);
  }
  capi::ListContainersResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub.List(client->NewContext().get(), req, &resp)));
  return std::vector<capi::Container>(resp.containers().begin(), resp.containers().end());
}

Result<capi::Container> GetContainer(Cli& cli, capi::Containers::Stub& stub,
                                     const std::string& id) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  capi::GetContainerRequest req;
  req.set_id(id);
  capi::GetContainerResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub.Get(client->NewContext().get(), req, &resp)));
  return resp.container();
}

int RunList(Cli& cli, const std::vector<std::string>& filters, bool quiet) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  auto list = ListContainers(cli, **stub, filters);
  if (!list) return ReportError(list.error());
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& c : *list) arr.push_back(quiet ? nlohmann::json(c.id()) : ContainerJson(c));
    PrintJson(arr, std::cout);
    return 0;
  }
  if (quiet) {
    for (const auto& c : *list) std::cout << c.id() << '\n';
    return 0;
  }
  Table table({"ID", "IMAGE", "RUNTIME"});
  for (const auto& c : *list) {
    table.AddRow({c.id(), c.image().empty() ? "-" : c.image(), c.runtime().name()});
  }
  table.Print(std::cout);
  return 0;
}

int RunInfo(Cli& cli, const std::string& id, bool spec_only) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  auto c = GetContainer(cli, **stub, id);
  if (!c) return ReportError(c.error());
  // JSON in either format: a container record is a document, not a row.
  PrintJson(spec_only ? SpecJson(*c) : ContainerJson(*c), std::cout);
  return 0;
}

// What `ctr c rm` does client side: refuse while a task exists, remove the container's
// snapshot (unless kept; an already missing one is fine), then the record.
Status RemoveContainer(Cli& cli, capi::Containers::Stub& stub, const std::string& id,
                       bool keep_snapshot) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  ASSIGN_OR_RETURN(capi::Container c, GetContainer(cli, stub, id));
  {
    tapi::GetRequest req;
    req.set_container_id(id);
    tapi::GetResponse resp;
    Status s = FromGrpc(
        tapi::Tasks::NewStub(client->channel())->Get(client->NewContext().get(), req, &resp));
    if (s.ok()) {
      return FailedPrecondition("container " + Quote(id) + " has a task; delete the task first");
    }
    // NotFound: no task. Unimplemented: a daemon without tasks, so no task either.
    if (s.code() != Code::kNotFound && s.code() != Code::kUnimplemented) return s;
  }
  if (!keep_snapshot && !c.snapshot_key().empty()) {
    if (c.snapshotter().empty()) {
      return InvalidArgument("container.Snapshotter must be set to cleanup rootfs snapshot");
    }
    sapi::RemoveSnapshotRequest req;
    req.set_snapshotter(c.snapshotter());
    req.set_key(c.snapshot_key());
    google::protobuf::Empty resp;
    Status s = FromGrpc(sapi::Snapshots::NewStub(client->channel())
                            ->Remove(client->NewContext().get(), req, &resp));
    if (!s.ok() && s.code() != Code::kNotFound) {
      return s.Wrap("remove snapshot " + Quote(c.snapshot_key()));
    }
  }
  capi::DeleteContainerRequest req;
  req.set_id(id);
  google::protobuf::Empty resp;
  return FromGrpc(stub.Delete(client->NewContext().get(), req, &resp));
}

int RunRemove(Cli& cli, const std::vector<std::string>& ids, bool keep_snapshot) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  return RemoveEach(cli, ids, [&](const std::string& id, size_t) {
    return RemoveContainer(cli, **stub, id, keep_snapshot);
  });
}

int RunLabel(Cli& cli, const std::string& id, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  capi::Container result;
  if (labels->empty()) {
    auto c = GetContainer(cli, **stub, id);
    if (!c) return ReportError(c.error());
    result = std::move(*c);
  } else {
    capi::UpdateContainerRequest req;
    req.mutable_container()->set_id(id);
    for (const auto& [k, v] : *labels) {
      // An empty value is left out of the map: with its path in the mask, that removes it.
      if (!v.empty()) (*req.mutable_container()->mutable_labels())[k] = v;
      req.mutable_update_mask()->add_paths("labels." + k);
    }
    capi::UpdateContainerResponse resp;
    auto ctx = (*cli.client())->NewContext();
    if (Status s = FromGrpc((*stub)->Update(ctx.get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    result = resp.container();
  }
  if (cli.format() == Format::kJson) {
    PrintJson({{"id", result.id()}, {"labels", ToLabels(result.labels())}}, std::cout);
  } else {
    // The container's labels after the change, as ctr prints them.
    std::cout << JoinLabels(ToLabels(result.labels())) << '\n';
  }
  return 0;
}

}  // namespace

void AddContainersCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("containers", "manage containers (records, not tasks)");
  group->alias("container");
  group->alias("c");
  group->require_subcommand(1);

  struct Args {
    bool quiet = false;
    bool spec = false;
    bool keep_snapshot = false;
    std::string id;
    std::vector<std::string> list;
  };
  auto args = std::make_shared<Args>();

  auto* ls = group->add_subcommand(
      "ls", "list containers (filters: id==..., image==..., runtime.name==..., labels.k==v)");
  ls->alias("list");
  ls->add_option("filters", args->list, "containerd filters");
  ls->add_flag("-q,--quiet", args->quiet, "print only the IDs");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, args->list, args->quiet); });

  auto* info = group->add_subcommand("info", "print a container as JSON (the OCI spec decoded)");
  info->add_option("id", args->id, "container ID")->required();
  info->add_flag("--spec", args->spec, "print only the spec");
  OnParsed(info, cli, [&cli, args] { return RunInfo(cli, args->id, args->spec); });

  auto* rm = group->add_subcommand("rm", "remove containers and their snapshots");
  rm->alias("remove");
  rm->alias("delete");
  rm->alias("del");
  rm->add_option("ids", args->list, "container IDs")->required();
  rm->add_flag("--keep-snapshot", args->keep_snapshot, "do not remove the container's snapshot");
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->list, args->keep_snapshot); });

  auto* label = group->add_subcommand(
      "label", "set labels on a container (key=value; key= removes) and print them");
  label->add_option("id", args->id, "container ID")->required();
  label->add_option("labels", args->list, "labels as key=value");
  OnParsed(label, cli, [&cli, args] { return RunLabel(cli, args->id, args->list); });
}

}  // namespace berth::cli
