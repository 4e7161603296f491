// berth version: this client's build and the server's Version + Introspection.Server answers.
#include <iostream>

#include "cli/commands.h"
#include "client/introspection.h"

namespace berth::cli {
namespace {

Result<ServerVersion> QueryServer(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return GetServerVersion(*client);
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
