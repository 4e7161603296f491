// berth plugins ls: the daemon's plugins, as `ctr plugins ls` shows them.
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "client/introspection.h"

namespace berth::cli {
namespace {

// ctr's STATUS column: "ok", "skip" (the plugin chose not to load), "error".
std::string StatusOf(const PluginInfo& p) {
  if (p.init_error.empty()) return "ok";
  return p.init_error.find("skip plugin") != std::string::npos ? "skip" : "error";
}

std::string Join(const std::vector<std::string>& items, const char* sep, const char* none) {
  if (items.empty()) return none;
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

nlohmann::json PluginJson(const PluginInfo& p) {
  nlohmann::json j = {{"type", p.type},
                      {"id", p.id},
                      {"requires", p.requires_types},
                      {"platforms", p.platforms},
                      {"exports", p.exports},
                      {"capabilities", p.capabilities},
                      {"status", StatusOf(p)}};
  if (!p.init_error.empty()) j["error"] = p.init_error;
  return j;
}

struct ListArgs {
  bool quiet = false;
  bool detailed = false;
  std::vector<std::string> filters;
};

int RunList(Cli& cli, const ListArgs& a) {
  auto client = cli.client();
  if (!client) return ReportError(client.error());
  auto plugins = ListPlugins(**client, a.filters);
  if (!plugins) return ReportError(plugins.error());
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& p : *plugins) arr.push_back(a.quiet ? nlohmann::json(p.id) : PluginJson(p));
    PrintJson(arr, std::cout);
    return 0;
  }
  if (a.quiet) {
    for (const auto& p : *plugins) std::cout << p.id << '\n';
    return 0;
  }
  if (a.detailed) {
    // ctr plugins ls -d: one block per plugin.
    bool first = true;
    for (const auto& p : *plugins) {
      if (!first) std::cout << '\n';
      first = false;
      std::cout << "Type:          " << p.type << '\n'
                << "ID:            " << p.id << '\n';
      if (!p.requires_types.empty()) {
        std::cout << "Requires:      \n";
        for (const auto& r : p.requires_types) std::cout << "               " << r << '\n';
      }
      if (!p.platforms.empty()) {
        std::cout << "Platforms:     " << Join(p.platforms, ",", "-") << '\n';
      }
      if (!p.exports.empty()) {
        std::cout << "Exports:       \n";
        for (const auto& [k, v] : p.exports) {
          std::cout << "               " << k << "      " << v << '\n';
        }
      }
      if (!p.capabilities.empty()) {
        std::cout << "Capabilities:  " << Join(p.capabilities, ",", "") << '\n';
      }
      if (!p.init_error.empty()) std::cout << "Error:         " << p.init_error << '\n';
    }
    return 0;
  }
  Table table({"TYPE", "ID", "PLATFORMS", "STATUS"});
  for (const auto& p : *plugins) {
    table.AddRow({p.type, p.id, Join(p.platforms, ",", "-"), StatusOf(p)});
  }
  table.Print(std::cout);
  return 0;
}

}  // namespace

void AddPluginsCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("plugins", "the daemon's plugins");
  group->alias("plugin");
  group->require_subcommand(1);
  auto args = std::make_shared<ListArgs>();
  auto* ls = group->add_subcommand("ls", "list plugins: TYPE ID PLATFORMS STATUS");
  ls->alias("list");
  SetUsage(ls, "[OPTIONS] [FILTER...]");
  ls->add_flag("-q,--quiet", args->quiet, "print only the plugin IDs");
  ls->add_flag("-d,--detailed", args->detailed,
               "print everything about each plugin (requires, exports, errors)");
  ls->add_option("FILTER", args->filters,
                 "containerd filters, e.g. type==io.containerd.snapshotter.v1 or id==overlayfs");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, *args); });
}

}  // namespace berth::cli
