// LocalStore: the content store on the local file system, laid out like containerd's
// (plugins/content/local):
//
//   <root>/blobs/sha256/<hex>          committed blobs, mode 0444, mtime = commit time
//   <root>/ingest/<sha256hex(ref)>/    one directory per active ingest:
//       ref        the ref string (the directory name is its hash, so any ref is safe)
//       data       the bytes written so far; offset = its size
//       startedat  RFC 3339 (nanoseconds) time the ingest started
//       updatedat  time of the last write, refreshed when a writer closes
//       total      expected size in decimal, only when the writer announced one
//
// Commit is atomic (reliability-anchors "Atomic content commit", T12): verify size and digest
// (the hash is kept incrementally), make the data read-only with the commit time as mtime,
// fsync it, then move it into blobs/ with renameat2(RENAME_NOREPLACE) — so an existing blob
// is never replaced and the existence check cannot race — and fsync blobs/sha256. A new ingest
// directory is assembled under a `.tmp-` name and renamed into place, so a crash never leaves a
// half-made one.
//
// Recovery (Open): stray temp files are removed (`.tmp-*` staging directories and `*.tmp`
// files in ingest/, anything in blobs/sha256 that is not a 64-hex file), as are ingest
// directories without `ref` or `data` (a crash between "blob renamed" and "ingest removed").
// Every other ingest stays resumable at the size of its data.
//
// Locking is in-process (one berthd owns a root; the daemon refuses to start twice).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/env.h"
#include "common/fs.h"
#include "common/thread_annotations.h"
#include "content/content.h"

namespace berth::content {

class LocalStore final : public Store, public Sweeper {
 public:
  // Opens (creating if needed) the store under `root` and runs recovery. Directories are
  // created 0700. Errors: from the file system, naming the path. Every file operation that
  // writes goes through `env`, and ingest/commit times come from `clock` (tests inject faults
  // and time there; both must outlive the store).
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& root,
                                                  Env& env = Env::Default(),
                                                  WallClock& clock = WallClock::Real());
  ~LocalStore() override;

  Result<BlobInfo> Info(std::string_view digest) override;
  Result<std::unique_ptr<ReaderAt>> OpenReader(std::string_view digest) override;
  berth::Status Delete(std::string_view digest) override;
  berth::Status Walk(const std::function<berth::Status(const BlobInfo&)>& fn) override;

  Result<std::unique_ptr<Writer>> OpenWriter(std::string_view ref, int64_t total) override;
  Result<IngestStatus> Status(std::string_view ref) override;
  berth::Status Abort(std::string_view ref) override;
  berth::Status WalkIngests(const std::function<berth::Status(const IngestStatus&)>& fn) override;
  // Garbage collection (sweep.cc): blob files and ingest dirs the metadata no longer names.
  Result<int64_t> Sweep(const std::set<std::string>& keep_blobs,
                        const std::set<std::string>& keep_ingests) override;

  const std::string& root() const { return root_; }
  // Path of the blob file for a valid digest (for tests and diagnostics).
  std::string BlobPathForTest(std::string_view digest) const;
  // Path of the ingest directory for `ref`.
  std::string IngestPathForTest(std::string_view ref) const;
  // How many times OpenWriter tries a locked ref before Unavailable (default 10, with a
  // short random backoff as containerd does).
  void SetLockAttemptsForTest(int attempts) { lock_attempts_ = attempts; }

 private:
  friend class LocalWriter;
  LocalStore() = default;

  berth::Status Recover();
  // The lock of `ref`; Unavailable "ref ... locked for ... (since ...)" when held.
  berth::Status TryLock(const std::string& ref);
  void Unlock(const std::string& ref);
  Result<IngestStatus> ReadIngest(const std::string& name, std::string_view want_ref);
  berth::Status RemoveIngest(const std::string& name);

  std::string root_;
  Env* env_ = nullptr;
  WallClock* clock_ = nullptr;
  UniqueFd blobs_fd_;   // <root>/blobs/sha256
  UniqueFd ingest_fd_;  // <root>/ingest
  int lock_attempts_ = 10;
  std::mutex mu_;
  std::map<std::string, int64_t> locks_ GUARDED_BY(mu_);  // ref → unix nanos locked since
};

}  // namespace berth::content
