// berthd: a containerd-compatible daemon. See README.md and docs/.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "common/log.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/memory.h"

int main(int argc, char** argv) {
  berth::daemon::ConfigureMalloc();  // before any thread exists
  CLI::App app{"berthd: a container runtime daemon speaking containerd's API"};
  std::string config_path = berth::daemon::kDefaultConfigPath;
  std::string root, state, address, log_level;
  app.add_option("-c,--config", config_path, "path to the configuration file (TOML)");
  app.add_option("--root", root, "directory for persistent data");
  app.add_option("--state", state, "directory for runtime state");
  app.add_option("-a,--address", address, "gRPC socket path");
  app.add_option("-l,--log-level", log_level, "trace, debug, info, warn, error, fatal, panic");
  bool show_version = false;
  app.add_flag("-v,--version", show_version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (show_version) {
    std::printf("berthd %s %s\n", BERTH_VERSION, BERTH_REVISION);
    return 0;
  }

  auto cfg = berth::daemon::LoadConfig(config_path);
  if (!cfg) {
    std::fprintf(stderr, "berthd: %s\n", cfg.error().ToString().c_str());
    return 1;
  }
  if (!root.empty()) cfg->root = root;
  if (!state.empty()) cfg->state = state;
  if (!address.empty()) cfg->address = address;
  if (!log_level.empty()) cfg->log_level = log_level;
  if (auto s = berth::InitLogging(cfg->log_level); !s.ok()) {
    std::fprintf(stderr, "berthd: %s\n", s.ToString().c_str());
    return 1;
  }

  // Signals are taken synchronously by one thread: block them before gRPC starts its threads
  // so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto daemon = std::make_unique<berth::daemon::Daemon>(*cfg);
  if (auto s = daemon->Start(); !s.ok()) {
    spdlog::critical("cannot start: {}", s.ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  daemon->DrainForExit();
  spdlog::shutdown();
  // Everything is durable (each metadata commit is; the WAL is replayed on open). Skip the
  // gRPC shutdown and static destructors: clients see the connection drop, as when containerd
  // exits, and gRPC's global shutdown can sit for seconds joining an idle executor thread.
  std::_Exit(0);
}
