// Namespaces (tenants) in the metadata store, with containerd's semantics:
//  - namespaces are implicit: creating any object in one makes it exist (EnsureNamespace);
//  - Labels() of an unknown namespace is an empty map, never NotFound (clients read the
//    `containerd.io/defaults/*` labels before anything exists);
//  - Delete refuses while images, blobs, containers or snapshots remain (leases do not count).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/validate.h"
#include "metadata/db.h"

namespace berth::metadata {

struct Namespace {
  std::string name;
  Labels labels;
};

// Makes `name` exist inside a write transaction. The caller has validated it.
Status EnsureNamespace(Tx& tx, const std::string& name);

// Label edits for SetLabels: an empty value deletes the key.
using LabelEdits = std::vector<std::pair<std::string, std::string>>;

// Thread-safe; every call is one transaction.
class NamespaceStore {
 public:
  explicit NamespaceStore(Db& db) : db_(db) {}

  // Errors: InvalidArgument (name or labels), AlreadyExists.
  Status Create(const std::string& name, const Labels& labels);
  // Labels of `name`; empty for an unknown namespace.
  Result<Labels> GetLabels(const std::string& name) const;
  // All namespaces, sorted by name.
  Result<std::vector<Namespace>> List() const;
  // Applies `edits` (after clearing every label when `replace`), creating the namespace if
  // needed. Errors: InvalidArgument (name or a label too large). Returns the resulting labels.
  Result<Labels> SetLabels(const std::string& name, bool replace, const LabelEdits& edits);
  // Errors: NotFound, FailedPrecondition naming what the namespace still holds.
  Status Delete(const std::string& name);

 private:
  Db& db_;
};

}  // namespace berth::metadata
