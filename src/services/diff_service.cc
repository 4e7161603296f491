#include "services/diff_service.h"

#include <vector>

#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::diff::v1;

std::vector<Mount> FromProto(
    const google::protobuf::RepeatedPtrField<containerd::types::Mount>& in) {
  std::vector<Mount> out;
  out.reserve(in.size());
  for (const auto& m : in) {
    out.push_back({m.type(), m.source(), {m.options().begin(), m.options().end()}});
  }
  return out;
}

void ToProto(const diff::Descriptor& in, containerd::types::Descriptor* out) {
  out->set_media_type(in.media_type);
  out->set_digest(in.digest);
  out->set_size(in.size);
}

}  // namespace

grpc::Status DiffService::Apply(grpc::ServerContext* ctx, const api::ApplyRequest* req,
                                api::ApplyResponse* resp) {
  return Handle("Diff.Apply", ctx, [&](const CallCtx& c) -> Status {
    const diff::Descriptor layer{.media_type = req->diff().media_type(),
                                 .digest = req->diff().digest(),
                                 .size = req->diff().size()};
    ASSIGN_OR_RETURN(diff::Descriptor applied,
                     applier_.Apply({c.ns, c.lease}, layer, FromProto(req->mounts())));
    ToProto(applied, resp->mutable_applied());
    return Status::Ok();
  });
}

grpc::Status DiffService::Diff(grpc::ServerContext* ctx, const api::DiffRequest* req,
                               api::DiffResponse* resp) {
  return Handle("Diff.Diff", ctx, [&](const CallCtx& c) -> Status {
    diff::CompareOptions opts{.media_type = req->media_type(),
                              .ref = req->ref(),
                              .labels = Labels(req->labels().begin(), req->labels().end()),
                              .cancelled = [ctx] { return ctx->IsCancelled(); }};
    ASSIGN_OR_RETURN(diff::Descriptor written,
                     comparer_.Compare({c.ns, c.lease}, FromProto(req->left()),
                                       FromProto(req->right()), opts));
    ToProto(written, resp->mutable_diff());
    return Status::Ok();
  });
}

}  // namespace berth::services
