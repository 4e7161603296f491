#include "client/leases.h"

#include <google/protobuf/empty.pb.h>
#include <unistd.h>

#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"

namespace berth::client {
namespace {

namespace lapi = containerd::services::leases::v1;

constexpr auto kTempLeaseLifetime = std::chrono::hours(24);

}  // namespace

std::string NewLeaseId(const std::string& prefix) {
  return prefix + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

Result<std::string> CreateLease(const Client& client, const std::string& id,
                                std::chrono::milliseconds expire_after, const Labels& labels) {
  auto stub = lapi::Leases::NewStub(client.channel());
  lapi::CreateRequest req;
  req.set_id(id);
  for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
  if (expire_after.count() > 0) {
    (*req.mutable_labels())[kExpireLabel] = FormatRfc3339(
        std::chrono::system_clock::now() + expire_after, /*with_fraction=*/false);
  }
  lapi::CreateResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub->Create(client.NewContext().get(), req, &resp)));
  return resp.lease().id();
}

Status DeleteLease(const Client& client, const std::string& id, bool sync) {
  auto stub = lapi::Leases::NewStub(client.channel());
  lapi::DeleteRequest req;
  req.set_id(id);
  req.set_sync(sync);
  google::protobuf::Empty resp;
  return FromGrpc(stub->Delete(client.NewContext().get(), req, &resp));
}

Result<TempLease> TempLease::Create(const Client& client, const std::string& prefix) {
  ASSIGN_OR_RETURN(std::string id,
                   CreateLease(client, NewLeaseId(prefix),
                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                   kTempLeaseLifetime)));
  return TempLease(&client, std::move(id));
}

TempLease::~TempLease() {
  if (!id_.empty()) (void)DeleteLease(*client_, id_);
}

}  // namespace berth::client
