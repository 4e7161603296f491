// The content store: immutable blobs named by their digest, and the resumable ingests that
// produce them. This header is the vocabulary shared by the on-disk store (content/local) and
// the per-namespace layer above it (metadata/content_store.h).
//
// Vocabulary (containerd's, core/content/content.go):
//   blob    — committed bytes, addressed by "sha256:<hex>"; never modified, only deleted.
//   ingest  — an unfinished write, addressed by a caller-chosen `ref` string. It survives the
//             writer going away (client gone, daemon killed) and is resumed by opening a
//             writer on the same ref: the offset is the number of bytes already stored.
//   commit  — verifies size and digest of an ingest and turns it into a blob atomically:
//             a blob is either absent or complete, never half-written.
//
// Lifecycle of a write:
//
//   auto w = store.OpenWriter("pull-layer-1", /*total=*/1234);   // new, or resumed
//   auto st = (*w)->Status();            // st->offset = bytes already there (resume point)
//   (*w)->Write(bytes_from(st->offset)); // append; Truncate(0) starts over
//   (*w)->Commit(1234, "sha256:...");    // FailedPrecondition on mismatch, nothing committed
//
// Only one writer may hold a ref at a time; a second OpenWriter is Unavailable
// ("ref ... locked"), which containerd's clients retry with backoff.
//
// The backend Store below knows nothing of namespaces, labels or leases: those live in the
// metadata database (metadata/content_store.h), which also decides what garbage collection
// may delete. Blobs are shared on disk by every namespace that references them.
//
// What clients of content use (the Content and Diff services, the differ) is the namespaced
// view at the end of this file, split into containerd's roles (core/content/content.go):
// Provider reads, Manager handles committed blobs, Ingester writes and manages ingests.
// Today metadata::ContentStore implements all three; a proxy to a remote store can later.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/validate.h"

namespace berth::content {

// Longest ingest ref a client may name, in bytes: Content.Write refuses longer ones with
// InvalidArgument. containerd has no bound of its own short of its database's 32 KiB key limit;
// ours keeps every ref readable back from the ingest's `ref` file (see kMaxBackendRefBytes).
inline constexpr size_t kMaxRefBytes = 4096;
// Longest ref a Store accepts: room for the "<namespace>/<sequence>/" prefix the metadata layer
// puts in front of a client's ref (namespaces are at most 76 bytes, sequences 19 digits).
inline constexpr size_t kMaxBackendRefBytes = kMaxRefBytes + 128;

// One blob as a namespace sees it. Timestamps are unix nanoseconds (UTC).
struct Info {
  std::string digest;
  int64_t size = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  Labels labels;
};

// One active ingest (containerd's content.Status).
struct IngestStatus {
  std::string ref;
  int64_t offset = 0;      // bytes written so far
  int64_t total = 0;       // size announced by the writer, 0 = unknown
  std::string expected;    // digest announced by the writer, "" = unknown
  int64_t started_at = 0;  // unix nanoseconds
  int64_t updated_at = 0;
};

// Random access to one committed blob. Not thread-safe; open one per reader.
class ReaderAt {
 public:
  virtual ~ReaderAt() = default;
  // Size of the blob in bytes.
  virtual int64_t Size() const = 0;
  // Reads up to `n` bytes at `offset` into `buf`; returns the count, 0 at or past the end.
  // Short counts happen only at the end of the blob.
  virtual Result<size_t> ReadAt(char* buf, size_t n, int64_t offset) = 0;
};

// A write transaction on one ingest. Used by one thread at a time. Destroying a writer that
// was not committed closes it: the ingest stays on disk, resumable, and the ref is unlocked.
class Writer {
 public:
  virtual ~Writer() = default;

  // Ref, offset, total, times. Cheap; no I/O.
  virtual Result<IngestStatus> Status() const = 0;
  // Digest of the bytes written so far ("sha256:..."). After Commit: the committed digest.
  virtual std::string Digest() const = 0;
  // Appends `data` at the current offset. All or nothing: on error (ResourceExhausted for a
  // full disk, Internal otherwise) the ingest is left as it was before the call.
  virtual berth::Status Write(std::string_view data) = 0;
  // Discards everything written; only size 0 is supported (InvalidArgument otherwise).
  virtual berth::Status Truncate(int64_t size) = 0;
  // Flushes written bytes to stable storage. Commit does it too; callers that must keep a
  // lock short around Commit call Sync first so Commit's own flush finds nothing to do.
  virtual berth::Status Sync() = 0;
  // Verifies and publishes the blob: `size` (if > 0) must equal the bytes written and
  // `expected` (if non-empty) the digest of them, else FailedPrecondition naming both values
  // and nothing is committed (the ingest stays, resumable or abortable). If the blob already
  // exists, the ingest is dropped and the result is AlreadyExists (the bytes were identical,
  // so callers may treat it as success). `labels` are for stores that keep labels; the
  // on-disk store ignores them. The writer is finished afterwards, whatever the outcome.
  virtual berth::Status Commit(int64_t size, std::string_view expected, const Labels& labels) = 0;
  // Ends the transaction without committing; the ingest remains resumable. Idempotent.
  virtual berth::Status Close() = 0;
};

// What the store knows about a committed blob on disk.
struct BlobInfo {
  std::string digest;
  int64_t size = 0;
  int64_t committed_at = 0;  // file mtime = commit time, unix nanoseconds
};

// The namespace-agnostic blob store (containerd's content.Store minus labels).
// Thread-safe: all methods may be called concurrently.
class Store {
 public:
  virtual ~Store() = default;

  // --- blobs. Every digest is validated first: InvalidArgument before any path is built.
  // Errors: InvalidArgument, NotFound.
  virtual Result<BlobInfo> Info(std::string_view digest) = 0;
  virtual Result<std::unique_ptr<ReaderAt>> OpenReader(std::string_view digest) = 0;
  // Removes the blob file. Errors: InvalidArgument, NotFound.
  virtual berth::Status Delete(std::string_view digest) = 0;
  // Calls fn for every blob on disk, in no particular order; stops at the first error fn
  // returns and returns it. For garbage collection and recovery.
  virtual berth::Status Walk(const std::function<berth::Status(const BlobInfo&)>& fn) = 0;

  // --- ingests, keyed by `ref` (any non-empty string; it is hashed, never used as a path).
  // Opens a new ingest or resumes the existing one for `ref` (offset = bytes stored, which
  // are re-hashed). `total` > 0 records the expected size; if it disagrees with the total
  // stored by an earlier writer, the ingest starts over at offset 0.
  // Errors: InvalidArgument (empty ref, or longer than kMaxBackendRefBytes), Unavailable
  // ("ref ... locked") while another writer
  // holds the ref, ResourceExhausted / Internal from the file system.
  virtual Result<std::unique_ptr<Writer>> OpenWriter(std::string_view ref, int64_t total) = 0;
  // Status of the ingest for `ref` (offset = size of its data). Errors: NotFound.
  virtual Result<IngestStatus> Status(std::string_view ref) = 0;
  // Removes the ingest and its data. Errors: NotFound, Unavailable while a writer holds it.
  virtual berth::Status Abort(std::string_view ref) = 0;
  // Calls fn for every ingest on disk (ref, offset, total, times), in no particular order.
  virtual berth::Status WalkIngests(
      const std::function<berth::Status(const IngestStatus&)>& fn) = 0;
};

// ---- The namespaced view: every call names the namespace (validated by the caller) and,
// where it creates or drops references, the lease ("" = none) it acts under.

// Reads committed blobs visible in a namespace (containerd's content.Provider).
class Provider {
 public:
  virtual ~Provider() = default;
  // Errors: InvalidArgument (digest), NotFound (not in this namespace).
  virtual Result<std::unique_ptr<ReaderAt>> OpenReader(const std::string& ns,
                                                       std::string_view digest) const = 0;
};

// Committed blobs of a namespace: info, labels, listing, removal (containerd's
// content.Manager).
class Manager {
 public:
  virtual ~Manager() = default;
  // Errors: InvalidArgument (digest), NotFound (not in this namespace).
  virtual Result<content::Info> Info(const std::string& ns, std::string_view digest) const = 0;
  // Edits labels by field mask (none or "labels" replace all, "labels.<key>" one key; any
  // other path is InvalidArgument). Errors: InvalidArgument, NotFound.
  virtual Result<content::Info> Update(const std::string& ns, const content::Info& info,
                                       const std::vector<std::string>& fieldpaths) = 0;
  // Blobs of the namespace matching any of `filters` (fields `digest`, `labels.<key>`).
  virtual Result<std::vector<content::Info>> List(
      const std::string& ns, std::span<const std::string> filters = {}) const = 0;
  // Removes the blob from the namespace (and from `lease`); the bytes go when nothing else
  // references them. Errors: InvalidArgument, NotFound.
  virtual berth::Status Delete(const std::string& ns, std::string_view lease,
                               std::string_view digest) = 0;
};

// Writes blobs through resumable ingests, and manages those ingests (containerd's
// content.Ingester + content.IngestManager).
class Ingester {
 public:
  virtual ~Ingester() = default;
  // Opens (or resumes) ingest `ref`; `total` (> 0) and `expected` ("" = unknown) describe the
  // blob. Errors: InvalidArgument (empty ref, bad digest), AlreadyExists (expected digest
  // already in the namespace), Unavailable ("ref ... locked"), NotFound (lease).
  virtual Result<std::unique_ptr<Writer>> OpenWriter(const std::string& ns,
                                                     std::string_view lease, std::string_view ref,
                                                     int64_t total,
                                                     std::string_view expected) = 0;
  // Errors: NotFound.
  virtual Result<IngestStatus> Status(const std::string& ns, std::string_view ref) const = 0;
  // Active ingests of the namespace matching any of `filters` (field `ref`).
  virtual Result<std::vector<IngestStatus>> ListStatuses(
      const std::string& ns, std::span<const std::string> filters = {}) const = 0;
  // Discards ingest `ref`. Errors: NotFound, Unavailable (a writer is using it).
  virtual berth::Status Abort(const std::string& ns, std::string_view lease,
                              std::string_view ref) = 0;
};

// All three roles: what the Content service serves. Thread-safe.
class NamespacedStore : public Provider, public Manager, public Ingester {};

// The garbage-collection role of a store that keeps blobs and ingests on disk. The metadata's
// collector (metadata/gc.h) decides what is referenced; the store removes the rest, so the
// metadata never needs to know how the store lays out its data.
class Sweeper {
 public:
  virtual ~Sweeper() = default;
  // Removes every blob whose digest is not in `keep_blobs` and every ingest whose ref is not in
  // `keep_ingests`. An ingest a writer holds is left for a later sweep. One entry that cannot be
  // read or removed is logged and skipped: it never stops the sweep. Returns how many entries
  // were removed. Errors: only when the store cannot be listed at all.
  // The caller holds the metadata's GC lock exclusively: no new data becomes referenced while
  // the sweep runs.
  virtual Result<int64_t> Sweep(const std::set<std::string>& keep_blobs,
                                const std::set<std::string>& keep_ingests) = 0;
};

}  // namespace berth::content
