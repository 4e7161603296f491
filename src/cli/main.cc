// berth: the command-line client for berthd (containerd's `ctr`, friendlier).
#include <CLI/CLI.hpp>
#include <cstdlib>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // gRPC's own logging would interleave with our one-line errors; the user may re-enable it.
  ::setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);

  berth::cli::Cli cli;
  // Named, so usage says "berth", not the path it was started by.
  CLI::App app{"berth: command-line client for berthd", "berth"};
  app.require_subcommand(1);
  // Global flags may follow the subcommand too: `berth ns ls --format json`.
  app.fallthrough();
  berth::cli::AddGlobalOptions(app, cli);
  berth::cli::AddVersionCommand(app, cli);
  berth::cli::AddInfoCommand(app, cli);
  berth::cli::AddPluginsCommands(app, cli);
  berth::cli::AddNamespacesCommands(app, cli);
  berth::cli::AddContentCommands(app, cli);
  berth::cli::AddImagesCommands(app, cli);
  berth::cli::AddContainersCommands(app, cli);
  berth::cli::AddLeasesCommands(app, cli);
  berth::cli::AddSnapshotsCommands(app, cli);
  berth::cli::AddEventsCommand(app, cli);
  berth::cli::AddRunCommands(app, cli);
  berth::cli::AddTasksCommands(app, cli);
  return berth::cli::ParseAndRun(app, cli, argc, argv);
}
