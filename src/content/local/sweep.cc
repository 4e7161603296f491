// LocalStore's part of garbage collection: remove the blob files and ingest directories the
// metadata no longer references (content.h, Sweeper). Kept apart from store.cc, which holds the
// write path.
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.h"
#include "content/digest.h"
#include "content/local/store.h"

namespace berth::content {
namespace {

// Entry names of directory `dir`.
Result<std::vector<std::string>> Names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.push_back(e.path().filename().string());
  }
  if (ec) return std::unexpected(StatusFromErrno(ec.value(), "list " + dir));
  return out;
}

}  // namespace

Result<int64_t> LocalStore::Sweep(const std::set<std::string>& keep_blobs,
                                  const std::set<std::string>& keep_ingests) {
  int64_t removed = 0;
  ASSIGN_OR_RETURN(std::vector<std::string> blobs, Names(root_ + "/blobs/sha256"));
  for (const auto& hex : blobs) {
    if (!IsSha256Hex(hex)) continue;  // not a blob; Recover removes strays at startup
    std::string digest = std::string(kSha256Prefix) + hex;
    if (keep_blobs.contains(digest)) continue;
    if (berth::Status s = Delete(digest); !s.ok()) {
      if (s.code() != Code::kNotFound) spdlog::warn("gc: remove blob {}: {}", digest, s.ToString());
      continue;
    }
    ++removed;
    spdlog::debug("gc: removed blob {}", digest);
  }

  ASSIGN_OR_RETURN(std::vector<std::string> ingests, Names(root_ + "/ingest"));
  for (const auto& name : ingests) {
    if (!IsSha256Hex(name)) continue;  // a writer's staging dir, or a stray for Recover
    auto st = ReadIngest(name, "");
    if (!st) {
      // One unreadable ingest (e.g. a `ref` file too long to read back) must not stop the
      // sweep; Recover removes it at the next start if it is broken for good.
      if (st.error().code() != Code::kNotFound) {
        spdlog::warn("gc: skipping unreadable ingest {}/ingest/{}: {}", root_, name,
                     st.error().ToString());
      }
      continue;
    }
    if (keep_ingests.contains(st->ref)) continue;
    berth::Status s = Abort(st->ref);
    if (s.ok()) {
      ++removed;
      spdlog::debug("gc: removed ingest {}", st->ref);
    } else if (s.code() == Code::kUnavailable) {
      spdlog::debug("gc: ingest {} is in use; left for a later pass", st->ref);
    } else if (s.code() != Code::kNotFound) {
      spdlog::warn("gc: remove ingest {}: {}", st->ref, s.ToString());
    }
  }
  return removed;
}

}  // namespace berth::content
