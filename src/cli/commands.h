// The pieces every command group shares: the global flags, the lazily opened Client, and the
// action the parsed subcommand picked. Each group lives in its own <group>_cmd.cc and adds
// itself to the app with an Add...Commands function declared here.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <CLI/CLI.hpp>
#include <chrono>
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

// A protobuf Timestamp as a time point.
inline std::chrono::system_clock::time_point ToTimePoint(const google::protobuf::Timestamp& t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(t.seconds()) + std::chrono::nanoseconds(t.nanos())));
}
// RFC 3339 UTC ("" for an unset timestamp), for JSON output.
std::string TimestampJson(const google::protobuf::Timestamp& t);
// "5 seconds" since `t` (docker-style, for AGE columns); "-" for an unset timestamp.
std::string AgeOf(const google::protobuf::Timestamp& t);

// Prints `s` (PrintError) and returns the exit code 1.
int ReportError(const Status& s);

// The `rm` of every command group: calls remove(item, index) for each item; a failure is
// reported and does not spare the rest. Removed items are printed one per line, or as a JSON
// array. Returns the exit code (1 if any failed).
int RemoveEach(Cli& cli, const std::vector<std::string>& items,
               const std::function<Status(const std::string& item, size_t index)>& remove);

// Command groups.
void AddVersionCommand(CLI::App& app, Cli& cli);
void AddNamespacesCommands(CLI::App& app, Cli& cli);
void AddContentCommands(CLI::App& app, Cli& cli);
void AddLeasesCommands(CLI::App& app, Cli& cli);
void AddImagesCommands(CLI::App& app, Cli& cli);
// `images mount` and `images unmount`, added to the images group by AddImagesCommands.
void AddImagesMountCommands(CLI::App& images_group, Cli& cli);
void AddSnapshotsCommands(CLI::App& app, Cli& cli);
void AddContainersCommands(CLI::App& app, Cli& cli);
void AddEventsCommand(CLI::App& app, Cli& cli);
// run, create, start, exec, attach, kill, ps, pause, resume, rm, and the `tasks` group.
void AddTasksCommands(CLI::App& app, Cli& cli);

}  // namespace berth::cli
