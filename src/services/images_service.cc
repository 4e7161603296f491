#include "services/images_service.h"

#include "common/log.h"
#include "github.com/containerd/containerd/api/events/image.pb.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace iv1 = containerd::services::images::v1;
namespace {

metadata::Image FromProto(const iv1::Image& in) {
  metadata::Image img;
  img.name = in.name();
  img.labels = Labels(in.labels().begin(), in.labels().end());
  const auto& t = in.target();
  img.target.media_type = t.media_type();
  img.target.digest = t.digest();
  img.target.size = t.size();
  img.target.annotations =
      std::map<std::string, std::string>(t.annotations().begin(), t.annotations().end());
  return img;
}

// Every field is written, even empty ones: containerd's Go types are non-nullable here.
void ToProto(const metadata::Image& img, iv1::Image* out) {
  out->set_name(img.name);
  for (const auto& [k, v] : img.labels) (*out->mutable_labels())[k] = v;
  auto* t = out->mutable_target();
  t->set_media_type(img.target.media_type);
  t->set_digest(img.target.digest);
  t->set_size(img.target.size);
  for (const auto& [k, v] : img.target.annotations) (*t->mutable_annotations())[k] = v;
  *out->mutable_created_at() = ToTimestamp(img.created_at);
  *out->mutable_updated_at() = ToTimestamp(img.updated_at);
}

template <typename Event>
Event NameAndLabels(const metadata::Image& img) {
  Event ev;
  ev.set_name(img.name);
  for (const auto& [k, v] : img.labels) (*ev.mutable_labels())[k] = v;
  return ev;
}

}  // namespace

grpc::Status ImagesService::Get(grpc::ServerContext* ctx, const iv1::GetImageRequest* req,
                                iv1::GetImageResponse* resp) {
  return Handle("Images.Get", ctx, [&](const CallCtx& c) -> Status {
    ASSIGN_OR_RETURN(metadata::Image img, store_.Get(c.ns, req->name()));
    ToProto(img, resp->mutable_image());
    return Status::Ok();
  });
}

grpc::Status ImagesService::List(grpc::ServerContext* ctx, const iv1::ListImagesRequest* req,
                                 iv1::ListImagesResponse* resp) {
  return Handle("Images.List", ctx, [&](const CallCtx& c) -> Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto images, store_.List(c.ns, exprs));
    for (const auto& img : images) ToProto(img, resp->add_images());
    return Status::Ok();
  });
}

grpc::Status ImagesService::Create(grpc::ServerContext* ctx, const iv1::CreateImageRequest* req,
                                   iv1::CreateImageResponse* resp) {
  return Handle("Images.Create", ctx, [&](const CallCtx& c) -> Status {
    const auto& in = req->image();
    spdlog::debug("create image ns={} name={} target={}", c.ns, in.name(), in.target().digest());
    if (in.name().empty()) return InvalidArgument("Image.Name required");
    ASSIGN_OR_RETURN(metadata::Image created, store_.Create(c.ns, FromProto(in)));
    ToProto(created, resp->mutable_image());
    PublishEvent(exchange_, c.ns, "/images/create", NameAndLabels<iv1::ImageCreate>(created));
    return Status::Ok();
  });
}

grpc::Status ImagesService::Update(grpc::ServerContext* ctx, const iv1::UpdateImageRequest* req,
                                   iv1::UpdateImageResponse* resp) {
  return Handle("Images.Update", ctx, [&](const CallCtx& c) -> Status {
    const auto& in = req->image();
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("update image ns={} name={} paths={}", c.ns, in.name(), paths.size());
    if (in.name().empty()) return InvalidArgument("Image.Name required");
    ASSIGN_OR_RETURN(metadata::Image updated, store_.Update(c.ns, FromProto(in), paths));
    ToProto(updated, resp->mutable_image());
    PublishEvent(exchange_, c.ns, "/images/update", NameAndLabels<iv1::ImageUpdate>(updated));
    return Status::Ok();
  });
}

grpc::Status ImagesService::Delete(grpc::ServerContext* ctx, const iv1::DeleteImageRequest* req,
                                   google::protobuf::Empty*) {
  return Handle("Images.Delete", ctx, [&](const CallCtx& c) -> Status {
    spdlog::debug("delete image ns={} name={} sync={}", c.ns, req->name(), req->sync());
    RETURN_IF_ERROR(store_.Delete(c.ns, req->name()));
    iv1::ImageDelete ev;
    ev.set_name(req->name());
    PublishEvent(exchange_, c.ns, "/images/delete", ev);
    gc_.Trigger(req->sync());
    return Status::Ok();
  });
}

}  // namespace berth::services
