#include "daemon/config.h"

#include <sys/stat.h>

#include <set>
#include <sstream>
#include <toml++/toml.h>

namespace berth::daemon {
namespace {

std::string Where(const toml::node& n) {
  std::ostringstream os;
  os << n.source().begin;
  return os.str();
}

template <typename T>
Status Read(const toml::table& t, const char* key, T* out, const std::string& path) {
  const toml::node* n = t.get(key);
  if (!n) return Status::Ok();
  auto v = n->value<T>();
  if (!v) return InvalidArgument(path + ": " + key + " has the wrong type at " + Where(*n));
  *out = *v;
  return Status::Ok();
}

// Unknown keys are errors: a typo must not silently fall back to a default path.
Status CheckKeys(const toml::table& t, const std::set<std::string>& allowed,
                 const std::string& section, const std::string& path) {
  for (const auto& [k, v] : t) {
    if (!allowed.contains(std::string(k.str()))) {
      return InvalidArgument(path + ": unknown key " + section + std::string(k.str()) + " at " +
                             Where(v));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Config> LoadConfig(const std::string& path) {
  Config cfg;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return cfg;  // missing file: defaults
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << path << ": " << e.description() << " at " << e.source().begin;
    return std::unexpected(InvalidArgument(os.str()));
  }
  RETURN_IF_ERROR(CheckKeys(root, {"version", "root", "state", "grpc", "debug", "diff", "runtimes"}, "", path));
  int64_t version = 1;
  RETURN_IF_ERROR(Read(root, "version", &version, path));
  if (version != 1) {
    return std::unexpected(InvalidArgument(path + ": unsupported config version " +
                                           std::to_string(version) + " (want 1)"));
  }
  RETURN_IF_ERROR(Read(root, "root", &cfg.root, path));
  RETURN_IF_ERROR(Read(root, "state", &cfg.state, path));
  if (const auto* grpc = root["grpc"].as_table()) {
    RETURN_IF_ERROR(CheckKeys(
        *grpc, {"address", "max_recv_message_size", "max_send_message_size"}, "grpc.", path));
    RETURN_IF_ERROR(Read(*grpc, "address", &cfg.address, path));
    int64_t recv = cfg.max_recv_message_size, send = cfg.max_send_message_size;
    RETURN_IF_ERROR(Read(*grpc, "max_recv_message_size", &recv, path));
    RETURN_IF_ERROR(Read(*grpc, "max_send_message_size", &send, path));
    if (recv <= 0 || send <= 0 || recv > (1LL << 30) || send > (1LL << 30)) {
      return std::unexpected(InvalidArgument(path + ": grpc message sizes must be in (0, 1 GiB]"));
    }
    cfg.max_recv_message_size = static_cast<int>(recv);
    cfg.max_send_message_size = static_cast<int>(send);
  }
  if (const auto* debug = root["debug"].as_table()) {
    RETURN_IF_ERROR(CheckKeys(*debug, {"level"}, "debug.", path));
    RETURN_IF_ERROR(Read(*debug, "level", &cfg.log_level, path));
  }
  if (const auto* diff = root["diff"].as_table()) {
    RETURN_IF_ERROR(CheckKeys(*diff, {"max_expansion_ratio"}, "diff.", path));
    int64_t ratio = static_cast<int64_t>(cfg.max_expansion_ratio);
    RETURN_IF_ERROR(Read(*diff, "max_expansion_ratio", &ratio, path));
    if (ratio < 0) {
      return std::unexpected(
          InvalidArgument(path + ": diff.max_expansion_ratio must be >= 0 (0: no bound)"));
    }
    cfg.max_expansion_ratio = static_cast<uint64_t>(ratio);
  }
  if (const auto* runtimes = root["runtimes"].as_table()) {
    for (const auto& [name, node] : *runtimes) {
      const auto* rt = node.as_table();
      std::string section = "runtimes." + std::string(name.str()) + ".";
      if (!rt) return std::unexpected(InvalidArgument(path + ": " + section + " is not a table"));
      RETURN_IF_ERROR(CheckKeys(*rt, {"binary"}, section, path));
      std::string binary;
      RETURN_IF_ERROR(Read(*rt, "binary", &binary, path));
      if (binary.empty() || binary[0] != '/') {
        return std::unexpected(
            InvalidArgument(path + ": " + section + "binary must be an absolute path"));
      }
      cfg.runtime_binaries[std::string(name.str())] = binary;
    }
  }
  return cfg;
}

}  // namespace berth::daemon
