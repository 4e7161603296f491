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

#include "cli/output.h"
#include "client/client.h"
#include "common/status.h"
#include "common/validate.h"

namespace berth::cli {

// The CLI is a thin layer over the client library (src/client): flags in, output out. Its
// names are used unqualified here.
using namespace ::berth::client;

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

// "berth: <message> (<code name>)" on stderr.
void PrintError(const Status& s);

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
// run and create (ctr's run/).
void AddRunCommands(CLI::App& app, Cli& cli);
// start, exec, attach, kill, ps, pause, resume, rm, and the `tasks` group (ctr's tasks/).
void AddTasksCommands(CLI::App& app, Cli& cli);
// plugins ls (ctr plugins ls).
void AddPluginsCommands(CLI::App& app, Cli& cli);
// info: the daemon, its directories, runtimes and snapshotters.
void AddInfoCommand(CLI::App& app, Cli& cli);

// Commands that end with the process's argv take everything after their positional
// arguments verbatim (`berth run IMG id sh -c 'exit 3'`), like ctr: flags go first.
void TakeArgv(CLI::App* cmd);

// The directory for a process's stdio FIFOs: `flag` (--fifo-dir) or "fifo" beside the socket.
std::string FifoRoot(const Cli& cli, const std::string& flag);

// Exit codes of the CLI itself (a container's own exit code passes through run/exec/start).
inline constexpr int kExitError = 1;  // the command failed
inline constexpr int kExitUsage = 2;  // bad flags, arguments or command names

// A usage line for `cmd`'s help after "Usage: <path>", e.g. "[OPTIONS] IMAGE ID [COMMAND
// [ARG...]]" (CLI11 2.1 would print the positional names as declared).
void SetUsage(CLI::App* cmd, std::string usage);

// Parses argv into `app` and runs the chosen action. Parse errors print "berth: ..." with a
// hint (the closest command names, `berth ... --help`) and return kExitUsage; --help returns 0.
int ParseAndRun(CLI::App& app, Cli& cli, int argc, char** argv);

}  // namespace berth::cli
