// berthd's configuration: /etc/berth/config.toml (a missing file means defaults), then flags.
//
//   version = 1
//   root  = "/var/lib/berth"      # persistent data (0700)
//   state = "/run/berth"          # runtime state (0700)
//   [grpc]
//   address = "/run/berth/berthd.sock"
//   max_recv_message_size = 16777216
//   max_send_message_size = 16777216
//   [debug]
//   level = "info"
//   [diff]
//   max_expansion_ratio = 1100          # compressed layers: decompressed ≤ ratio × size
//                                       # (at least 64 MiB); 0 = no bound
//   [runtimes."io.containerd.runc.v2"]    # optional: the shim binary for a runtime name
//   binary = "/usr/bin/containerd-shim-runc-v2"
//
// Without a [runtimes] entry, io.containerd.runc.v2 and io.containerd.berth.v2 run our
// containerd-shim-berth-v2 (next to berthd, else in $PATH); any other
// io.containerd.<name>.<version> runs containerd-shim-<name>-<version> found in $PATH or next
// to berthd (containerd's rule).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"

namespace berth::daemon {

// Equal to diff::kDefaultMaxExpansionRatio (checked in daemon.cc; the config does not depend on
// the diff library).
inline constexpr uint64_t kDefaultMaxExpansionRatio = 1100;

struct Config {
  std::string root = "/var/lib/berth";
  std::string state = "/run/berth";
  std::string address = "/run/berth/berthd.sock";
  std::string log_level = "info";
  // The Go client sends up to 16 MiB; accept as much in both directions.
  int max_recv_message_size = 16 << 20;
  int max_send_message_size = 16 << 20;
  // Bound on what a compressed layer may decompress to, as a multiple of its size
  // (diff::kDefaultMaxExpansionRatio; 0 = none). One setting for gzip and zstd alike.
  uint64_t max_expansion_ratio = kDefaultMaxExpansionRatio;
  // Runtime name → shim binary path.
  std::map<std::string, std::string> runtime_binaries;
};

inline constexpr char kDefaultConfigPath[] = "/etc/berth/config.toml";

// Reads `path` over the defaults. A missing file is not an error; a file that does not parse,
// an unknown key or a value of the wrong type is InvalidArgument naming the file and line.
Result<Config> LoadConfig(const std::string& path);

}  // namespace berth::daemon
