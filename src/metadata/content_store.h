// Content as a namespace sees it: ownership, labels, timestamps and lease attachment in the
// metadata database, bytes in a shared content::Store backend (containerd's
// core/metadata/content.go over plugins/content/local).
//
// Model:
//  - A blob is visible in a namespace only while the namespace has a `content` row for it.
//    The file on disk is shared; Delete removes the row (and its labels) only, and garbage
//    collection frees the file once no namespace references it.
//  - An ingest is a row in `ingests` (namespace, client ref) naming a backend ingest by
//    `backend_ref` = "<namespace>/<sequence>/<ref>", so equal refs in two namespaces never
//    meet on disk. Outside a lease an ingest expires 24 h after it was last opened (until
//    then it is a GC root); with a lease (the `containerd-lease` header) it lives as long as
//    the lease.
//  - Opening a writer (compat §4.2):
//      expected digest already in this namespace      → AlreadyExists (and the content is
//                                                       attached to the lease, if any)
//      expected on disk, not here, size 0 or equal    → a "shared" writer: Status reports
//                                                       offset = total = size; a Commit with
//                                                       no data links the blob in
//      another writer holds the ref                   → Unavailable ("ref ... locked")
//      an ingest exists for the ref                   → resumed at its offset
//  - Commit verifies size and digest (FailedPrecondition, nothing committed), publishes the
//    blob, then in one transaction removes the ingest row, inserts the content row with the
//    commit's labels and attaches it to the lease. A blob that appeared on disk meanwhile is
//    simply linked in; one already in this namespace is AlreadyExists.
//
// Garbage-collection contract: "blob file in place" + "content row inserted", and "ingest row
// inserted" + "backend ingest created", each happen under Db::gc_lock() held shared, so the
// collector (which takes it exclusively) never deletes data whose row is about to appear.
// The sweep (metadata/gc.h, ReferencedContent) keeps the blobs named by a content row or
// expected by an ingest row (a "shared" writer links that blob on commit), and the backend
// ingests named by an ingest row; a backend ingest still held by a writer is skipped.
//
// Namespaces are implicit: writes create them. Callers validate the namespace name (services
// do it with RequireNamespace). Thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "content/content.h"
#include "metadata/db.h"

namespace berth::metadata {

// How long an ingest outside any lease stays a GC root after it was last opened.
inline constexpr int64_t kIngestExpiryNanos = int64_t{24} * 3600 * 1000000000;

class ContentStore final : public content::NamespacedStore {
 public:
  ContentStore(Db& db, content::Store& backend) : db_(db), backend_(backend) {}

  // Errors: InvalidArgument (digest), NotFound (not in this namespace).
  Result<content::Info> Info(const std::string& ns, std::string_view digest) const override;

  // Edits labels by field mask (ParseLabelMask rules: none/"labels" replace all,
  // "labels.<key>" one key); any other path is InvalidArgument. Sets updated_at.
  // Errors: InvalidArgument (digest, path, label size), NotFound.
  Result<content::Info> Update(const std::string& ns, const content::Info& info,
                               const std::vector<std::string>& fieldpaths) override;

  // Blobs of the namespace, by digest, matching any of `filters` (fields `digest`,
  // `labels.<key>`; `size` is never matched, as in containerd). Errors: InvalidArgument.
  Result<std::vector<content::Info>> List(
      const std::string& ns, std::span<const std::string> filters = {}) const override;

  // Removes the blob from the namespace (row and labels; the file is GC's job) and from the
  // lease `lease` if given. Errors: InvalidArgument, NotFound.
  berth::Status Delete(const std::string& ns, std::string_view lease,
                       std::string_view digest) override;

  // Reader over a blob visible in the namespace. Errors: InvalidArgument, NotFound.
  Result<std::unique_ptr<content::ReaderAt>> OpenReader(const std::string& ns,
                                                        std::string_view digest) const override;

  // The active ingest `ref` of the namespace (ref as the client named it).
  // Errors: NotFound (no such ingest, or it holds no data on disk yet).
  Result<content::IngestStatus> Status(const std::string& ns,
                                       std::string_view ref) const override;

  // Active ingests of the namespace matching any of `filters` (field `ref`), by ref.
  // Ingest rows without data on disk (shared writers) are left out, as containerd does; so is
  // (logged) an ingest whose data cannot be read back (DataLoss).
  Result<std::vector<content::IngestStatus>> ListStatuses(
      const std::string& ns, std::span<const std::string> filters = {}) const override;

  // Discards ingest `ref`: its data and its row; detaches it from `lease` if given.
  // Errors: NotFound, Unavailable (a writer is using it).
  berth::Status Abort(const std::string& ns, std::string_view lease,
                      std::string_view ref) override;

  // Opens a writer on `ref` per the rules above. `total` (> 0) and `expected` ("" = unknown)
  // describe the blob. Errors: InvalidArgument (empty ref, one longer than
  // content::kMaxRefBytes, bad expected digest),
  // AlreadyExists, Unavailable, NotFound ("lease does not exist").
  Result<std::unique_ptr<content::Writer>> OpenWriter(const std::string& ns, std::string_view lease,
                                                      std::string_view ref, int64_t total,
                                                      std::string_view expected) override;

  content::Store& backend() { return backend_; }

  // The ingest row of `ref` in `ns` as stored, for tests: the backend ref, the expected digest
  // and the expiry (nullopt while a lease holds it). nullopt when there is no row.
  struct IngestRecord {
    std::string backend_ref;
    std::string expected;
    std::optional<int64_t> expires_at;
  };
  Result<std::optional<IngestRecord>> IngestRowForTest(const std::string& ns,
                                                       std::string_view ref) const;

 private:
  friend class NamespacedWriter;

  Db& db_;
  content::Store& backend_;
};

}  // namespace berth::metadata
