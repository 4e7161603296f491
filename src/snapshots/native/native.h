// The native backend (containerd's snapshots/native): every Active snapshot is a full copy of
// its parent in `<root>/snapshots/<id>`; views with a parent hold no data and bind the parent
// read-only. Works on any filesystem; costs a copy per layer.
#pragma once

#include <memory>
#include <string>

#include "common/env.h"
#include "snapshots/snapshotter.h"

namespace berth::snapshots {

class NativeBackend final : public Backend {
 public:
  // Create makes and publishes directories through `env` (must outlive the backend).
  static Result<std::unique_ptr<NativeBackend>> Open(const std::string& root,
                                                     Env& env = Env::Default());

  std::string_view name() const override { return "native"; }
  Status Create(int64_t id, Kind kind, std::span<const int64_t> parents) override;
  Result<std::vector<Mount>> Mounts(int64_t id, Kind kind,
                                    std::span<const int64_t> parents) const override;
  Result<Usage> Measure(int64_t id) const override;
  Status Remove(int64_t id) override;
  Result<std::vector<int64_t>> List() const override;
  Result<int64_t> Sweep(const std::set<int64_t>& keep) override;
  Result<int64_t> PendingRemovals() const override;

  std::string Dir(int64_t id) const { return root_ + "/snapshots/" + std::to_string(id); }

 private:
  NativeBackend(std::string root, Env& env) : root_(std::move(root)), env_(env) {}
  std::string root_;
  Env& env_;
};

}  // namespace berth::snapshots
