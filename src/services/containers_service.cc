#include "services/containers_service.h"

#include "common/log.h"
#include "github.com/containerd/containerd/api/events/container.pb.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace cv1 = containerd::services::containers::v1;
namespace {

metadata::AnyValue FromAny(const google::protobuf::Any& any) {
  return {.type_url = any.type_url(), .value = any.value()};
}

void ToAny(const metadata::AnyValue& in, google::protobuf::Any* out) {
  out->set_type_url(in.type_url);
  out->set_value(in.value);
}

metadata::Container FromProto(const cv1::Container& in) {
  metadata::Container c;
  c.id = in.id();
  c.labels = Labels(in.labels().begin(), in.labels().end());
  c.image = in.image();
  if (in.has_runtime()) {
    c.runtime_name = in.runtime().name();
    if (in.runtime().has_options()) c.runtime_options = FromAny(in.runtime().options());
  }
  if (in.has_spec()) c.spec = FromAny(in.spec());
  c.snapshotter = in.snapshotter();
  c.snapshot_key = in.snapshot_key();
  for (const auto& [name, any] : in.extensions()) c.extensions.emplace(name, FromAny(any));
  return c;
}

// Runtime is always present on the wire, as containerd's Go conversion always sets it; spec and
// runtime options only when the container has them.
void ToProto(const metadata::Container& c, cv1::Container* out) {
  out->set_id(c.id);
  for (const auto& [k, v] : c.labels) (*out->mutable_labels())[k] = v;
  out->set_image(c.image);
  auto* rt = out->mutable_runtime();
  rt->set_name(c.runtime_name);
  if (c.runtime_options) ToAny(*c.runtime_options, rt->mutable_options());
  if (c.spec) ToAny(*c.spec, out->mutable_spec());
  out->set_snapshotter(c.snapshotter);
  out->set_snapshot_key(c.snapshot_key);
  *out->mutable_created_at() = ToTimestamp(c.created_at);
  *out->mutable_updated_at() = ToTimestamp(c.updated_at);
  for (const auto& [name, any] : c.extensions) ToAny(any, &(*out->mutable_extensions())[name]);
}

}  // namespace

grpc::Status ContainersService::Get(grpc::ServerContext* ctx, const cv1::GetContainerRequest* req,
                                    cv1::GetContainerResponse* resp) {
  return Guard("Containers.Get", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    auto c = store_.Get(*ns, req->id());
    if (!c) return ToGrpc(c.error());
    ToProto(*c, resp->mutable_container());
    return grpc::Status::OK;
  });
}

grpc::Status ContainersService::List(grpc::ServerContext* ctx,
                                     const cv1::ListContainersRequest* req,
                                     cv1::ListContainersResponse* resp) {
  return Guard("Containers.List", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto list = store_.List(*ns, exprs);
    if (!list) return ToGrpc(list.error());
    for (const auto& c : *list) ToProto(c, resp->add_containers());
    return grpc::Status::OK;
  });
}

grpc::Status ContainersService::ListStream(grpc::ServerContext* ctx,
                                           const cv1::ListContainersRequest* req,
                                           grpc::ServerWriter<cv1::ListContainerMessage>* writer) {
  return Guard("Containers.ListStream", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto list = store_.List(*ns, exprs);
    if (!list) return ToGrpc(list.error());
    // One container per message keeps each under the message size limit however many there
    // are. A client that went away ends the stream; containerd returns nil then too.
    for (const auto& c : *list) {
      if (ctx->IsCancelled()) break;
      cv1::ListContainerMessage msg;
      ToProto(c, msg.mutable_container());
      if (!writer->Write(msg)) break;
    }
    return grpc::Status::OK;
  });
}

grpc::Status ContainersService::Create(grpc::ServerContext* ctx,
                                       const cv1::CreateContainerRequest* req,
                                       cv1::CreateContainerResponse* resp) {
  return Guard("Containers.Create", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    const auto& in = req->container();
    spdlog::debug("create container ns={} id={} image={} runtime={}", *ns, in.id(), in.image(),
                  in.runtime().name());
    auto created = store_.Create(*ns, FromProto(in));
    if (!created) return ToGrpc(created.error());
    ToProto(*created, resp->mutable_container());
    containerd::events::ContainerCreate ev;
    ev.set_id(created->id);
    ev.set_image(created->image);
    ev.mutable_runtime()->set_name(created->runtime_name);
    if (created->runtime_options) {
      ToAny(*created->runtime_options, ev.mutable_runtime()->mutable_options());
    }
    PublishEvent(exchange_, *ns, "/containers/create", ev);
    return grpc::Status::OK;
  });
}

grpc::Status ContainersService::Update(grpc::ServerContext* ctx,
                                       const cv1::UpdateContainerRequest* req,
                                       cv1::UpdateContainerResponse* resp) {
  return Guard("Containers.Update", [&] {
    const auto& in = req->container();
    // Checked before the namespace, as containerd does.
    if (in.id().empty()) return ToGrpc(InvalidArgument("Container.ID required"));
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("update container ns={} id={} paths={}", *ns, in.id(), paths.size());
    auto updated = store_.Update(*ns, FromProto(in), paths);
    if (!updated) return ToGrpc(updated.error());
    ToProto(*updated, resp->mutable_container());
    containerd::events::ContainerUpdate ev;
    ev.set_id(updated->id);
    ev.set_image(updated->image);
    for (const auto& [k, v] : updated->labels) (*ev.mutable_labels())[k] = v;
    ev.set_snapshot_key(updated->snapshot_key);
    PublishEvent(exchange_, *ns, "/containers/update", ev);
    return grpc::Status::OK;
  });
}

grpc::Status ContainersService::Delete(grpc::ServerContext* ctx,
                                       const cv1::DeleteContainerRequest* req,
                                       google::protobuf::Empty*) {
  return Guard("Containers.Delete", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    spdlog::debug("delete container ns={} id={}", *ns, req->id());
    if (Status s = store_.Delete(*ns, req->id()); !s.ok()) return ToGrpc(s);
    containerd::events::ContainerDelete ev;
    ev.set_id(req->id());
    PublishEvent(exchange_, *ns, "/containers/delete", ev);
    gc_.Trigger(false);
    return grpc::Status::OK;
  });
}

}  // namespace berth::services
