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
  return Handle("Containers.Get", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(metadata::Container container, store_.Get(c.ns, req->id()));
    ToProto(container, resp->mutable_container());
    return Status::Ok();
  });
}

grpc::Status ContainersService::List(grpc::ServerContext* ctx,
                                     const cv1::ListContainersRequest* req,
                                     cv1::ListContainersResponse* resp) {
  return Handle("Containers.List", ctx, [&](const CallCtx& c) -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto list, store_.List(c.ns, exprs));
    for (const auto& container : list) ToProto(container, resp->add_containers());
    return Status::Ok();
  });
}

grpc::Status ContainersService::ListStream(grpc::ServerContext* ctx,
                                           const cv1::ListContainersRequest* req,
                                           grpc::ServerWriter<cv1::ListContainerMessage>* writer) {
  return Handle("Containers.ListStream", ctx, [&](const CallCtx& c) -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto list, store_.List(c.ns, exprs));
    // One container per message keeps each under the message size limit however many there
    // are. A client that went away ends the stream; containerd returns nil then too.
    for (const auto& container : list) {
      if (ctx->IsCancelled()) break;
      cv1::ListContainerMessage msg;
      ToProto(container, msg.mutable_container());
      if (!writer->Write(msg)) break;
    }
    return Status::Ok();
  });
}

grpc::Status ContainersService::Create(grpc::ServerContext* ctx,
                                       const cv1::CreateContainerRequest* req,
                                       cv1::CreateContainerResponse* resp) {
  return Handle("Containers.Create", ctx, [&](const CallCtx& c) -> Status {
    const auto& in = req->container();
    spdlog::debug("create container ns={} id={} image={} runtime={}", c.ns, in.id(), in.image(),
                  in.runtime().name());
    ASSIGN_OR_RETURN(metadata::Container created, store_.Create(c.ns, FromProto(in)));
    ToProto(created, resp->mutable_container());
    containerd::events::ContainerCreate ev;
    ev.set_id(created.id);
    ev.set_image(created.image);
    ev.mutable_runtime()->set_name(created.runtime_name);
    if (created.runtime_options) {
      ToAny(*created.runtime_options, ev.mutable_runtime()->mutable_options());
    }
    PublishEvent(exchange_, c.ns, "/containers/create", ev);
    return Status::Ok();
  });
}

grpc::Status ContainersService::Update(grpc::ServerContext* ctx,
                                       const cv1::UpdateContainerRequest* req,
                                       cv1::UpdateContainerResponse* resp) {
  return HandleNoNamespace("Containers.Update", [&]() -> Status {
    const auto& in = req->container();
    // Checked before the namespace, as containerd does.
    if (in.id().empty()) return InvalidArgument("Container.ID required");
    ASSIGN_OR_RETURN(CallCtx c, RequireCallCtx(ctx));
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("update container ns={} id={} paths={}", c.ns, in.id(), paths.size());
    ASSIGN_OR_RETURN(metadata::Container updated, store_.Update(c.ns, FromProto(in), paths));
    ToProto(updated, resp->mutable_container());
    containerd::events::ContainerUpdate ev;
    ev.set_id(updated.id);
    ev.set_image(updated.image);
    for (const auto& [k, v] : updated.labels) (*ev.mutable_labels())[k] = v;
    ev.set_snapshot_key(updated.snapshot_key);
    PublishEvent(exchange_, c.ns, "/containers/update", ev);
    return Status::Ok();
  });
}

grpc::Status ContainersService::Delete(grpc::ServerContext* ctx,
                                       const cv1::DeleteContainerRequest* req,
                                       google::protobuf::Empty*) {
  return Handle("Containers.Delete", ctx, [&](const CallCtx& c) -> Status {
    spdlog::debug("delete container ns={} id={}", c.ns, req->id());
    RETURN_IF_ERROR(store_.Delete(c.ns, req->id()));
    containerd::events::ContainerDelete ev;
    ev.set_id(req->id());
    PublishEvent(exchange_, c.ns, "/containers/delete", ev);
    gc_.Trigger(false);
    return Status::Ok();
  });
}

}  // namespace berth::services
