// berth version: this client's build and the server's Version + Introspection.Server answers.
#include <google/protobuf/empty.pb.h>

#include <iostream>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/services/introspection/v1/introspection.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.grpc.pb.h"

namespace berth::cli {
namespace {

namespace introspection = containerd::services::introspection::v1;
namespace version = containerd::services::version::v1;

struct ServerInfo {
  std::string version;
  std::string revision;
  std::string uuid;
};

Result<ServerInfo> QueryServer(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  ServerInfo info;
  version::VersionResponse v;
  auto vs = version::Version::NewStub(client->channel());
  RETURN_IF_ERROR(FromGrpc(vs->Version(client->NewContext().get(), {}, &v)));
  info.version = v.version();
  info.revision = v.revision();
  introspection::ServerResponse s;
  auto is = introspection::Introspection::NewStub(client->channel());
  RETURN_IF_ERROR(FromGrpc(is->Server(client->NewContext().get(), {}, &s)));
  info.uuid = s.uuid();
  return info;
}

int RunVersion(Cli& cli) {
  if (cli.format() == Format::kJson) {
    auto server = QueryServer(cli);
    if (!server) {
      PrintError(server.error());
      return 1;
    }
    PrintJson(
        {{"client", {{"version", BERTH_VERSION}, {"revision", BERTH_REVISION}}},
         {"server",
          {{"version", server->version}, {"revision", server->revision}, {"uuid", server->uuid}}}},
        std::cout);
    return 0;
  }
  // The client half first: it is useful even when the daemon is down.
  std::cout << "Client:\n"
            << "  Version:   " << BERTH_VERSION << "\n"
            << "  Revision:  " << BERTH_REVISION << "\n\n"
            << std::flush;
  auto server = QueryServer(cli);
  if (!server) {
    PrintError(server.error());
    return 1;
  }
  std::cout << "Server:\n"
            << "  Version:   " << server->version << "\n"
            << "  Revision:  " << server->revision << "\n"
            << "  UUID:      " << server->uuid << "\n";
  return 0;
}

}  // namespace

void AddVersionCommand(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("version", "print the client and server versions");
  OnParsed(cmd, cli, [&cli] { return RunVersion(cli); });
}

}  // namespace berth::cli
