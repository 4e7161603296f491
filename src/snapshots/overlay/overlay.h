// The overlayfs backend (containerd's snapshots/overlay): snapshot `id` keeps its upper layer in
// `<root>/snapshots/<id>/fs` and, while Active, overlay's scratch dir in `.../<id>/work`.
// Mounts follow compat §5.2 exactly: bind mounts when no overlay is needed, otherwise overlay
// with lowerdir listing parents nearest first.
#pragma once

#include <memory>
#include <string>

#include "common/env.h"
#include "snapshots/snapshotter.h"

namespace berth::snapshots {

class OverlayBackend final : public Backend {
 public:
  // `root` is the plugin's directory (e.g. <daemon root>/snapshots/overlayfs); created if
  // missing. `index_off`: add "index=off" to overlay mounts (the kernel exposes
  // /sys/module/overlay/parameters/index); use DetectIndexOff() for the real answer.
  // Create/Remove make and publish directories through `env` (must outlive the backend).
  static Result<std::unique_ptr<OverlayBackend>> Open(const std::string& root, bool index_off,
                                                      Env& env = Env::Default());
  static bool DetectIndexOff();

  std::string_view name() const override { return "overlayfs"; }
  Status Create(int64_t id, Kind kind, std::span<const int64_t> parents) override;
  Result<std::vector<Mount>> Mounts(int64_t id, Kind kind,
                                    std::span<const int64_t> parents) const override;
  Result<Usage> Measure(int64_t id) const override;
  Status Remove(int64_t id) override;
  Result<std::vector<int64_t>> List() const override;
  Result<int64_t> Sweep(const std::set<int64_t>& keep) override;
  Result<int64_t> PendingRemovals() const override;

  std::string UpperPath(int64_t id) const { return Dir(id) + "/fs"; }
  std::string WorkPath(int64_t id) const { return Dir(id) + "/work"; }

 private:
  OverlayBackend(std::string root, bool index_off, Env& env)
      : root_(std::move(root)), index_off_(index_off), env_(env) {}
  std::string Dir(int64_t id) const { return root_ + "/snapshots/" + std::to_string(id); }

  std::string root_;
  bool index_off_;
  Env& env_;
};

}  // namespace berth::snapshots
