// berth info: what the daemon is and where it keeps things — version, root and state
// directories, runtimes, snapshotters and the content store (every export of each, so new
// ones such as a snapshotter's pending removals show up without a CLI change).
#include <iostream>

#include "cli/commands.h"
#include "client/introspection.h"

namespace berth::cli {
namespace {

constexpr char kSnapshotterType[] = "io.containerd.snapshotter.v1";
constexpr char kContentType[] = "io.containerd.content.v1";
constexpr char kRuntimePrefix[] = "io.containerd.runtime.";

// The runtime names a daemon serves: berthd lists them in its runtime plugin's "runtimes"
// export ("a,b"); a daemon that does not (containerd) shows its runtime plugins.
std::vector<std::string> Runtimes(const std::vector<PluginInfo>& plugins) {
  std::vector<std::string> out;
  for (const auto& p : plugins) {
    if (!p.type.starts_with(kRuntimePrefix)) continue;
    auto it = p.exports.find("runtimes");
    if (it == p.exports.end()) {
      out.push_back(p.type + "." + p.id);
      continue;
    }
    size_t start = 0;
    while (start <= it->second.size()) {
      size_t comma = it->second.find(',', start);
      if (comma == std::string::npos) comma = it->second.size();
      if (comma > start) out.push_back(it->second.substr(start, comma - start));
      start = comma + 1;
    }
  }
  return out;
}

int RunInfo(Cli& cli) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto version = GetServerVersion(**client);
  if (!version) return ReportError(version.error());
  auto plugins = ListPlugins(**client);
  if (!plugins) return ReportError(plugins.error());
  DaemonDirs dirs = DirsFromPlugins(*plugins);
  std::vector<std::string> runtimes = Runtimes(*plugins);
  std::vector<const PluginInfo*> stores;  // snapshotters, then content stores
  for (const char* type : {kSnapshotterType, kContentType}) {
    for (const auto& p : *plugins) {
      if (p.type == type) stores.push_back(&p);
    }
  }

  if (cli.format() == Format::kJson) {
    nlohmann::json snapshotters = nlohmann::json::array();
    nlohmann::json content = nlohmann::json::array();
    for (const PluginInfo* p : stores) {
      nlohmann::json j = {{"id", p->id}, {"exports", p->exports}};
      if (!p->init_error.empty()) j["error"] = p->init_error;
      (p->type == kSnapshotterType ? snapshotters : content).push_back(std::move(j));
    }
    PrintJson({{"server",
                {{"version", version->version},
                 {"revision", version->revision},
                 {"uuid", version->uuid}}},
               {"root", dirs.root},
               {"state", dirs.state},
               {"runtimes", runtimes},
               {"snapshotters", snapshotters},
               {"content", content}},
              std::cout);
    return 0;
  }
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::cout << "Server:\n"
            << "  Version:   " << version->version << '\n'
            << "  Revision:  " << version->revision << '\n'
            << "  UUID:      " << version->uuid << '\n'
            << "  Root:      " << or_dash(dirs.root) << '\n'
            << "  State:     " << or_dash(dirs.state) << '\n'
            << "Runtimes:\n";
  for (const auto& r : runtimes) std::cout << "  " << r << '\n';
  const char* section = nullptr;
  for (const PluginInfo* p : stores) {
    const char* want = p->type == kSnapshotterType ? "Snapshotters:" : "Content:";
    if (section != want) std::cout << want << '\n';
    section = want;
    std::cout << "  " << p->id << (p->init_error.empty() ? "" : " (error: " + p->init_error + ")")
              << '\n';
    for (const auto& [k, v] : p->exports) std::cout << "    " << k << ": " << v << '\n';
  }
  return 0;
}

}  // namespace

void AddInfoCommand(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand(
      "info", "the daemon: version, root and state directories, runtimes, snapshotters");
  OnParsed(cmd, cli, [&cli] { return RunInfo(cli); });
}

}  // namespace berth::cli
