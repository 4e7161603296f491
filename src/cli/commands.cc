#include "cli/commands.h"

namespace berth::cli {

Result<Client*> Cli::client() {
  if (!client_) {
    ASSIGN_OR_RETURN(auto timeout, ParseDuration(options.timeout));
    ASSIGN_OR_RETURN(client_, Client::Connect(options.address, options.ns, timeout));
  }
  return client_.get();
}

void AddGlobalOptions(CLI::App& app, Cli& cli) {
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

}  // namespace berth::cli
