// Leases from the client side (containerd's client.WithLease / leases.Manager): a lease holds
// what calls made under it create (the `containerd-lease` header, Client::NewContext) until it
// is deleted or, with the `containerd.io/gc.expire` label, until it expires.
#pragma once

#include <chrono>
#include <string>

#include "client/client.h"
#include "common/status.h"
#include "common/validate.h"

namespace berth::client {

// A lease id unique enough for a client ("<prefix>-<pid>-<nanoseconds>").
std::string NewLeaseId(const std::string& prefix);

// Creates lease `id` with `labels`, plus gc.expire = now + `expire_after` when that is
// positive. AlreadyExists when `id` is taken. Returns the id.
Result<std::string> CreateLease(const Client& client, const std::string& id,
                                std::chrono::milliseconds expire_after, const Labels& labels = {});

// Deletes lease `id`; `sync` collects garbage before returning (Leases.Delete sync).
Status DeleteLease(const Client& client, const std::string& id, bool sync = false);

// A temporary lease that expires by itself after a day (in case we die) and is deleted when
// this object goes: what containerd's client holds while it builds a container or unpacks.
class TempLease {
 public:
  static Result<TempLease> Create(const Client& client, const std::string& prefix);
  TempLease(TempLease&& o) noexcept : client_(o.client_), id_(std::move(o.id_)) { o.id_.clear(); }
  TempLease& operator=(TempLease&&) = delete;
  ~TempLease();
  const std::string& id() const { return id_; }

 private:
  TempLease(const Client* client, std::string id) : client_(client), id_(std::move(id)) {}
  const Client* client_;
  std::string id_;
};

}  // namespace berth::client
