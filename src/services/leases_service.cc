#include "services/leases_service.h"

#include <chrono>
#include <random>

#include "common/log.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace lv1 = containerd::services::leases::v1;
namespace {

// What the Go client's leases.WithRandomID makes: the nanosecond within the current second,
// '-', and three random bytes in base64url (four characters, no padding).
std::string RandomLeaseId() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  thread_local std::mt19937 rng(std::random_device{}());
  uint32_t bits = rng() & 0xffffff;
  auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count();
  std::string id = std::to_string(nanos % 1000000000) + "-";
  for (int shift = 18; shift >= 0; shift -= 6) id += kAlphabet[(bits >> shift) & 0x3f];
  return id;
}

void ToProto(const metadata::Lease& l, lv1::Lease* out) {
  out->set_id(l.id);
  *out->mutable_created_at() = ToTimestamp(l.created_at);
  for (const auto& [k, v] : l.labels) (*out->mutable_labels())[k] = v;
}

}  // namespace

grpc::Status LeasesService::Create(grpc::ServerContext* ctx, const lv1::CreateRequest* req,
                                   lv1::CreateResponse* resp) {
  return Handle("Leases.Create", ctx, [&](const CallCtx& c) -> Status {
    Labels labels(req->labels().begin(), req->labels().end());
    Result<metadata::Lease> lease;
    if (!req->id().empty()) {
      lease = store_.Create(c.ns, req->id(), labels);
    } else {
      // A generated id can collide (24 random bits per nanosecond value); try again.
      for (int attempt = 0; attempt < 5; ++attempt) {
        lease = store_.Create(c.ns, RandomLeaseId(), labels);
        if (lease || lease.error().code() != Code::kAlreadyExists) break;
      }
    }
    RETURN_IF_ERROR(lease);
    spdlog::debug("create lease ns={} id={}", c.ns, lease->id);
    ToProto(*lease, resp->mutable_lease());
    return Status::Ok();
  });
}

grpc::Status LeasesService::Delete(grpc::ServerContext* ctx, const lv1::DeleteRequest* req,
                                   google::protobuf::Empty*) {
  return Handle("Leases.Delete", ctx, [&](const CallCtx& c) -> Status {
    spdlog::debug("delete lease ns={} id={} sync={}", c.ns, req->id(), req->sync());
    RETURN_IF_ERROR(store_.Delete(c.ns, req->id()));
    gc_.Trigger(req->sync());
    return Status::Ok();
  });
}

grpc::Status LeasesService::List(grpc::ServerContext* ctx, const lv1::ListRequest* req,
                                 lv1::ListResponse* resp) {
  return Handle("Leases.List", ctx, [&](const CallCtx& c) -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto leases, store_.List(c.ns, exprs));
    for (const auto& l : leases) ToProto(l, resp->add_leases());
    return Status::Ok();
  });
}

grpc::Status LeasesService::AddResource(grpc::ServerContext* ctx,
                                        const lv1::AddResourceRequest* req,
                                        google::protobuf::Empty*) {
  return Handle("Leases.AddResource", ctx, [&](const CallCtx& c) -> Status {
    const auto& r = req->resource();
    spdlog::debug("add lease resource ns={} lease={} type={} id={}", c.ns, req->id(), r.type(),
                  r.id());
    return store_.AddResource(c.ns, req->id(), {.id = r.id(), .type = r.type()});
  });
}

grpc::Status LeasesService::DeleteResource(grpc::ServerContext* ctx,
                                           const lv1::DeleteResourceRequest* req,
                                           google::protobuf::Empty*) {
  return Handle("Leases.DeleteResource", ctx, [&](const CallCtx& c) -> Status {
    const auto& r = req->resource();
    spdlog::debug("delete lease resource ns={} lease={} type={} id={}", c.ns, req->id(),
                  r.type(), r.id());
    RETURN_IF_ERROR(store_.DeleteResource(c.ns, req->id(), {.id = r.id(), .type = r.type()}));
    // The resource may now be unreferenced.
    gc_.Trigger(false);
    return Status::Ok();
  });
}

grpc::Status LeasesService::ListResources(grpc::ServerContext* ctx,
                                          const lv1::ListResourcesRequest* req,
                                          lv1::ListResourcesResponse* resp) {
  return Handle("Leases.ListResources", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(auto resources, store_.ListResources(c.ns, req->id()));
    for (const auto& r : resources) {
      auto* out = resp->add_resources();
      out->set_id(r.id);
      out->set_type(r.type);
    }
    return Status::Ok();
  });
}

}  // namespace berth::services
