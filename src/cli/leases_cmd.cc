// berth leases: ls, create, rm — the Leases service.
#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"

namespace berth::cli {
namespace {

namespace lapi = containerd::services::leases::v1;


Result<std::unique_ptr<lapi::Leases::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return lapi::Leases::NewStub(client->channel());
}

nlohmann::json LeaseJson(const lapi::Lease& l) {
  return {{"id", l.id()},
          {"created_at", TimestampJson(l.created_at())},
          {"labels", ToLabels(l.labels())}};
}

// "<unix nanoseconds>-<4 base64url characters>", the shape of ctr's generated lease IDs.
std::string RandomLeaseId() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  uint32_t bits = rd() & 0xFFFFFF;  // 3 random bytes → 4 characters, no padding
  std::string id = std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count()) +
                   "-";
  for (int shift = 18; shift >= 0; shift -= 6) id += kAlphabet[(bits >> shift) & 0x3F];
  return id;
}

int RunList(Cli& cli, const std::vector<std::string>& filters, bool quiet) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  lapi::ListRequest req;
  for (const auto& f : filters) req.add_filters(f);
  lapi::ListResponse resp;
  auto ctx = (*cli.client())->NewContext();
  if (Status s = FromGrpc((*stub)->List(ctx.get(), req, &resp)); !s.ok()) return ReportError(s);
  std::vector<lapi::Lease> leases(resp.leases().begin(), resp.leases().end());
  // Oldest first, as they were taken.
  std::ranges::sort(leases, [](const lapi::Lease& a, const lapi::Lease& b) {
    auto ka = std::tuple(a.created_at().seconds(), a.created_at().nanos(), a.id());
    auto kb = std::tuple(b.created_at().seconds(), b.created_at().nanos(), b.id());
    return ka < kb;
  });
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& l : leases) arr.push_back(quiet ? nlohmann::json(l.id()) : LeaseJson(l));
    PrintJson(arr, std::cout);
    return 0;
  }
  if (quiet) {
    for (const auto& l : leases) std::cout << l.id() << '\n';
    return 0;
  }
  Table table({"ID", "CREATED", "AGE", "LABELS"});
  for (const auto& l : leases) {
    Labels labels = ToLabels(l.labels());
    table.AddRow({l.id(), FormatRfc3339(ToTimePoint(l.created_at()), false), AgeOf(l.created_at()),
                  labels.empty() ? "-" : JoinLabels(labels)});
  }
  table.Print(std::cout);
  return 0;
}

struct CreateArgs {
  std::string id;
  std::string expires = "24h";
  std::vector<std::string> labels;
};

int RunCreate(Cli& cli, const CreateArgs& a) {
  auto labels = ParseLabelArgs(a.labels);
  if (!labels) return ReportError(labels.error());
  auto expires = ParseDuration(a.expires);
  if (!expires) return ReportError(expires.error().Wrap("--expires"));
  if (expires->count() > 0) {
    (*labels)[kExpireLabel] =
        FormatRfc3339(std::chrono::system_clock::now() + *expires, /*with_fraction=*/false);
  }
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  lapi::CreateRequest req;
  req.set_id(a.id.empty() ? RandomLeaseId() : a.id);
  for (const auto& [k, v] : *labels) (*req.mutable_labels())[k] = v;
  lapi::CreateResponse resp;
  auto ctx = (*cli.client())->NewContext();
  if (Status s = FromGrpc((*stub)->Create(ctx.get(), req, &resp)); !s.ok()) return ReportError(s);
  if (cli.format() == Format::kJson) {
    PrintJson(LeaseJson(resp.lease()), std::cout);
  } else {
    std::cout << resp.lease().id() << '\n';
  }
  return 0;
}

int RunRemove(Cli& cli, const std::vector<std::string>& ids, bool sync) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  return RemoveEach(cli, ids, [&](const std::string& id, size_t i) {
    lapi::DeleteRequest req;
    req.set_id(id);
    // One synchronous collection at the end covers every lease removed before it (as ctr).
    req.set_sync(sync && i + 1 == ids.size());
    google::protobuf::Empty resp;
    return FromGrpc((*stub)->Delete(client->NewContext().get(), req, &resp));
  });
}

}  // namespace

void AddLeasesCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("leases", "manage leases (they keep content from the GC)");
  group->alias("lease");
  group->require_subcommand(1);

  struct Args {
    bool quiet = false;
    bool sync = false;
    std::vector<std::string> list;
    CreateArgs create;
  };
  auto args = std::make_shared<Args>();

  auto* ls = group->add_subcommand("ls", "list leases (filters: id==..., labels.k==v)");
  ls->alias("list");
  ls->add_option("filters", args->list, "containerd filters");
  ls->add_flag("-q,--quiet", args->quiet, "print only the IDs");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, args->list, args->quiet); });

  auto* create = group->add_subcommand("create", "create a lease and print its ID");
  create->add_option("--id", args->create.id, "lease ID (default: generated)");
  create
      ->add_option("-x,--expires", args->create.expires,
                   "expire after this long (e.g. 30m, 24h; 0 never expires)")
      ->capture_default_str();
  create->add_option("labels", args->create.labels, "labels as key=value");
  OnParsed(create, cli, [&cli, args] { return RunCreate(cli, args->create); });

  auto* rm = group->add_subcommand("rm", "delete leases");
  rm->alias("remove");
  rm->alias("delete");
  rm->add_option("ids", args->list, "lease IDs")->required();
  rm->add_flag("--sync", args->sync, "wait for the garbage collection the removal triggers");
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->list, args->sync); });
}

}  // namespace berth::cli
