// The pieces every command group shares: the global flags, the lazily opened Client, and the
// action the parsed subcommand picked. Each group lives in its own <group>_cmd.cc and adds
// itself to the app with an Add...Commands function declared here.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/output.h"
#include "common/status.h"
#include "common/validate.h"

namespace berth::cli {

struct GlobalOptions {
  std::string address = kDefaultAddress;
  std::string ns = "default";
  std::string format = "table";
  std::string timeout = "5s";
};

class Cli {
 public:
  GlobalOptions options;
  // Set by the parsed subcommand's callback, run by main after parsing; returns the exit code.
  std::function<int()> action;

  Format format() const { return options.format == "json" ? Format::kJson : Format::kTable; }

  // Connects on first use, so commands that need no daemon never wait for one.
  Result<Client*> client();

 private:
  std::unique_ptr<Client> client_;
};

// Registers the global flags on the top-level app.
void AddGlobalOptions(CLI::App& app, Cli& cli);

// Picks `run` as the action when `cmd` is parsed.
void OnParsed(CLI::App* cmd, Cli& cli, std::function<int()> run);

// "k=v" arguments as labels; a later key wins. A missing '=' or empty key is
// InvalidArgument; "k=" is an empty value (which Update treats as "remove k").
Result<Labels> ParseLabelArgs(const std::vector<std::string>& args);

// Command groups.
void AddVersionCommand(CLI::App& app, Cli& cli);
void AddNamespacesCommands(CLI::App& app, Cli& cli);

}  // namespace berth::cli
