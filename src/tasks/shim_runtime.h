// tasks::Runtime over the runtime v2 shim manager: what the Tasks service is given.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tasks/runtime.h"
#include "tasks/shim_manager.h"

namespace berth::tasks {

class ShimRuntime final : public Runtime {
 public:
  explicit ShimRuntime(Manager& manager) : manager_(manager) {}

  Result<std::shared_ptr<Task>> Create(const CreateOptions& opts) override {
    ASSIGN_OR_RETURN(std::shared_ptr<Shim> shim, manager_.CreateTask(opts));
    return shim;
  }
  Result<std::shared_ptr<Task>> Get(const std::string& ns, const std::string& id) const override {
    ASSIGN_OR_RETURN(std::shared_ptr<Shim> shim, manager_.Get(ns, id));
    return shim;
  }
  std::vector<std::shared_ptr<Task>> List(const std::string& ns) const override {
    std::vector<std::shared_ptr<Shim>> shims = manager_.List(ns);
    return {shims.begin(), shims.end()};
  }
  Result<containerd::task::v2::DeleteResponse> Delete(const std::string& ns,
                                                       const std::string& id) override {
    return manager_.Delete(ns, id);
  }

 private:
  Manager& manager_;
};

}  // namespace berth::tasks
