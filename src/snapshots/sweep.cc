#include "snapshots/sweep.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <vector>

#include "common/log.h"
#include "snapshots/fs_util.h"

namespace berth::snapshots {
namespace {

namespace stdfs = std::filesystem;

constexpr std::string_view kRemovingPrefix = "rm-";

// The id in "rm-<id>" (RenameAndRemove's name; negative for a failed Create's temp dir).
std::optional<int64_t> RemovingId(const std::string& name) {
  if (!name.starts_with(kRemovingPrefix)) return std::nullopt;
  std::string rest = name.substr(kRemovingPrefix.size());
  bool negative = rest.starts_with('-');
  int64_t id = ParseId(negative ? rest.substr(1) : rest);
  if (id <= 0) return std::nullopt;
  return negative ? -id : id;
}

Result<std::vector<std::pair<std::string, int64_t>>> ListRemoving(const std::string& dir) {
  std::vector<std::pair<std::string, int64_t>> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (auto id = RemovingId(name)) out.emplace_back(std::move(name), *id);
  }
  if (ec && ec.value() != ENOENT) {
    return std::unexpected(StatusFromErrno(ec.value(), "list " + dir));
  }
  return out;
}

}  // namespace

Result<int64_t> SweepSnapshotDir(const std::string& dir, const std::set<int64_t>& keep,
                                 const std::function<Status(int64_t)>& remove) {
  // Leftovers first, so a removal that fails below is not tried twice in one pass.
  ASSIGN_OR_RETURN(auto leftovers, ListRemoving(dir));
  ASSIGN_OR_RETURN(std::vector<int64_t> ids, ListIds(dir));
  int64_t removed = 0;
  for (int64_t id : ids) {
    if (keep.contains(id)) continue;
    if (Status s = remove(id); !s.ok()) {
      spdlog::warn("gc: remove snapshot data {}/{}: {}", dir, id, s.ToString());
      continue;
    }
    ++removed;
    spdlog::debug("gc: removed snapshot data {}/{}", dir, id);
  }
  for (const auto& [name, id] : leftovers) {
    // Renaming rm-<id> onto itself is a no-op: this is the same remover a Remove uses.
    if (Status s = RenameAndRemove(dir + "/" + name, dir, id); !s.ok()) {
      spdlog::warn("gc: {}/{} is still left after a failed removal: {}", dir, name, s.ToString());
      continue;
    }
    ++removed;
    spdlog::info("gc: removed {}/{}, left by an earlier failed removal", dir, name);
  }
  return removed;
}

Result<int64_t> CountPendingRemovals(const std::string& dir) {
  ASSIGN_OR_RETURN(auto leftovers, ListRemoving(dir));
  return static_cast<int64_t>(leftovers.size());
}

}  // namespace berth::snapshots
