#include "cli/commands.h"

#include "client/task_io.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

namespace berth::cli {

Result<Client*> Cli::client() {
  if (!client_) {
    ASSIGN_OR_RETURN(auto timeout, ParseDuration(options.timeout));
    ASSIGN_OR_RETURN(client_, Client::Connect(options.address, options.ns, timeout));
  }
  return client_.get();
}

std::shared_ptr<CLI::FormatterBase> NewFormatter();

void AddGlobalOptions(CLI::App& app, Cli& cli) {
  // First, so every command added later inherits it (SetUsage).
  app.formatter(NewFormatter());
  app.add_option("-a,--address", cli.options.address, "berthd's socket")
      ->envname("BERTH_ADDRESS")
      ->capture_default_str();
  app.add_option("-n,--namespace", cli.options.ns, "namespace to work in")
      ->envname("BERTH_NAMESPACE")
      ->capture_default_str();
  app.add_option("--format", cli.options.format, "output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", cli.options.timeout,
                 "how long to wait for berthd to answer (e.g. 5s, 500ms; 0 waits forever)")
      ->check(CLI::Validator(
          [](std::string& s) {
            auto d = ParseDuration(s);
            return d ? std::string() : d.error().message();
          },
          "DURATION"))
      ->capture_default_str();
}

void OnParsed(CLI::App* cmd, Cli& cli, std::function<int()> run) {
  cmd->callback([&cli, run = std::move(run)] { cli.action = run; });
}

void TakeArgv(CLI::App* cmd) {
  cmd->prefix_command();
  cmd->fallthrough(false);
}

std::string FifoRoot(const Cli& cli, const std::string& flag) {
  return flag.empty() ? DefaultFifoRoot(SocketPath(cli.options.address)) : flag;
}

Result<Labels> ParseLabelArgs(const std::vector<std::string>& args) {
  Labels labels;
  for (const auto& arg : args) {
    size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Err(Code::kInvalidArgument, "label " + Quote(arg) + " must look like key=value");
    }
    labels[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  return labels;
}

std::string TimestampJson(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return FormatRfc3339(ToTimePoint(t));
}

std::string AgeOf(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return HumanDuration(std::chrono::system_clock::now() - ToTimePoint(t));
}

void PrintError(const Status& s) {
  std::string line = "berth: ";
  line += s.message().empty() ? std::string(CodeName(s.code()))
                              : s.message() + " (" + std::string(CodeName(s.code())) + ")";
  std::fprintf(stderr, "%s\n", line.c_str());
}

int ReportError(const Status& s) {
  PrintError(s);
  return 1;
}

int RemoveEach(Cli& cli, const std::vector<std::string>& items,
               const std::function<Status(const std::string& item, size_t index)>& remove) {
  int code = 0;
  nlohmann::json removed = nlohmann::json::array();
  for (size_t i = 0; i < items.size(); ++i) {
    if (Status s = remove(items[i], i); !s.ok()) {
      PrintError(s);
      code = 1;
      continue;
    }
    if (cli.format() == Format::kJson) {
      removed.push_back(items[i]);
    } else {
      std::cout << items[i] << '\n' << std::flush;
    }
  }
  if (cli.format() == Format::kJson) PrintJson(removed, std::cout);
  return code;
}

namespace {

// Usage lines set with SetUsage, by command. Commands live as long as the app, which is all of
// main().
std::map<const CLI::App*, std::string>& Usages() {
  static std::map<const CLI::App*, std::string> usages;
  return usages;
}

// CLI11's formatter, with our usage lines where a command has one.
class Formatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    auto it = Usages().find(app);
    if (it == Usages().end()) return CLI::Formatter::make_usage(app, std::move(name));
    return "Usage: " + name + " " + it->second + "\n";
  }
};

// "berth images ls" for `app`.
std::string CommandPath(const CLI::App* app) {
  std::vector<std::string> names;
  for (const CLI::App* a = app; a != nullptr; a = a->get_parent()) names.push_back(a->get_name());
  std::string out;
  for (auto it = names.rbegin(); it != names.rend(); ++it) out += (out.empty() ? "" : " ") + *it;
  return out;
}

// Levenshtein distance, bounded inputs (command names and what the user typed).
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The subcommands of `app` a user typing `typed` probably meant (cobra's "Did you mean
// this?": edit distance <= 2, or a prefix either way).
std::vector<std::string> Suggestions(const CLI::App* app, const std::string& typed) {
  std::vector<std::string> out;
  if (typed.size() > 64) return out;
  for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) {
    std::vector<std::string> names = {sub->get_name()};
    names.insert(names.end(), sub->get_aliases().begin(), sub->get_aliases().end());
    for (const auto& n : names) {
      if (EditDistance(n, typed) <= 2 || (typed.size() >= 2 && n.starts_with(typed)) ||
          (n.size() >= 2 && typed.starts_with(n))) {
        out.push_back(sub->get_name());  // the canonical name
        break;
      }
    }
  }
  return out;
}

// The deepest command the parse got to.
const CLI::App* DeepestCommand(const CLI::App& app) {
  const CLI::App* cur = &app;
  for (int depth = 0; depth < 8; ++depth) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) break;
    cur = subs.front();
  }
  return cur;
}

}  // namespace

std::shared_ptr<CLI::FormatterBase> NewFormatter() { return std::make_shared<Formatter>(); }

void SetUsage(CLI::App* cmd, std::string usage) { Usages()[cmd] = std::move(usage); }

int ParseAndRun(CLI::App& app, Cli& cli, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  } catch (const CLI::ParseError& e) {
    const CLI::App* cmd = DeepestCommand(app);
    // Words no command took: with fallthrough (global flags after the command) CLI11 leaves
    // them with the top-level app.
    std::vector<std::string> rest = cmd->remaining();
    if (rest.empty()) rest = app.remaining();
    bool has_subcommands =
        !cmd->get_subcommands([](const CLI::App*) { return true; }).empty();
    std::string msg = e.what();
    // A word where a command was due: name it, and what it may have meant.
    if (has_subcommands && !rest.empty() && !rest.front().starts_with("-")) {
      msg = "unknown command " + Quote(rest.front()) + " for " + Quote(CommandPath(cmd));
      auto hints = Suggestions(cmd, rest.front());
      if (!hints.empty()) {
        msg += "\n\nDid you mean this?";
        for (const auto& h : hints) msg += "\n\t" + h;
      }
    } else if (has_subcommands && cmd->get_subcommands().empty() && rest.empty() &&
               e.get_name() == "RequiredError") {
      msg = Quote(CommandPath(cmd)) + " needs a command";
    }
    std::fprintf(stderr, "berth: %s\nSee '%s --help'.\n", msg.c_str(),
                 CommandPath(cmd).c_str());
    return kExitUsage;
  }
  try {
    return cli.action ? cli.action() : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "berth: %s (internal)\n", e.what());
    return kExitError;
  }
}

}  // namespace berth::cli
