#include "services/snapshots_service.h"

#include "common/log.h"
#include "github.com/containerd/containerd/api/events/snapshot.pb.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::snapshots::v1;

constexpr int kListBatch = 100;

template <typename Resp>
void MountsToProto(const std::vector<snapshots::Mount>& mounts, Resp* resp) {
  for (const auto& m : mounts) {
    auto* out = resp->add_mounts();
    out->set_type(m.type);
    out->set_source(m.source);
    for (const auto& o : m.options) out->add_options(o);
  }
}

void InfoToProto(const snapshots::Info& in, api::Info* out) {
  out->set_name(in.name);
  out->set_parent(in.parent);
  out->set_kind(static_cast<api::Kind>(in.kind));
  *out->mutable_created_at() = ToTimestamp(in.created);
  *out->mutable_updated_at() = ToTimestamp(in.updated);
  for (const auto& [k, v] : in.labels) (*out->mutable_labels())[k] = v;
}

}  // namespace

Result<std::pair<snapshots::Snapshotter*, snapshots::Ctx>> SnapshotsService::Resolve(
    grpc::ServerContext* ctx, const std::string& name) {
  if (name.empty()) return std::unexpected(InvalidArgument("snapshotter argument missing"));
  auto it = snapshotters_.find(name);
  if (it == snapshotters_.end()) {
    return std::unexpected(InvalidArgument("snapshotter not loaded: " + name));
  }
  ASSIGN_OR_RETURN(CallCtx c, RequireCallCtx(ctx));
  return std::make_pair(it->second, snapshots::Ctx{c.ns, c.lease});
}

grpc::Status SnapshotsService::Prepare(grpc::ServerContext* ctx,
                                       const api::PrepareSnapshotRequest* req,
                                       api::PrepareSnapshotResponse* resp) {
  return HandleNoNamespace("Snapshots.Prepare", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    spdlog::debug("prepare snapshot ns={} sn={} key={} parent={}", c.ns, req->snapshotter(),
                  req->key(), req->parent());
    ASSIGN_OR_RETURN(auto mounts, sn->Prepare(c, req->key(), req->parent(),
                                              Labels(req->labels().begin(), req->labels().end())));
    MountsToProto(mounts, resp);
    containerd::events::SnapshotPrepare ev;
    ev.set_key(req->key());
    ev.set_parent(req->parent());
    PublishEvent(exchange_, c.ns, "/snapshot/prepare", ev);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::View(grpc::ServerContext* ctx, const api::ViewSnapshotRequest* req,
                                    api::ViewSnapshotResponse* resp) {
  return HandleNoNamespace("Snapshots.View", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    spdlog::debug("view snapshot ns={} sn={} key={} parent={}", c.ns, req->snapshotter(),
                  req->key(), req->parent());
    ASSIGN_OR_RETURN(auto mounts, sn->View(c, req->key(), req->parent(),
                                           Labels(req->labels().begin(), req->labels().end())));
    MountsToProto(mounts, resp);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext* ctx, const api::MountsRequest* req,
                                      api::MountsResponse* resp) {
  return HandleNoNamespace("Snapshots.Mounts", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    ASSIGN_OR_RETURN(auto mounts, sn->Mounts(c, req->key()));
    MountsToProto(mounts, resp);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext* ctx,
                                      const api::CommitSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  return HandleNoNamespace("Snapshots.Commit", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    spdlog::debug("commit snapshot ns={} sn={} key={} name={}", c.ns, req->snapshotter(),
                  req->key(), req->name());
    RETURN_IF_ERROR(
        sn->Commit(c, req->name(), req->key(), Labels(req->labels().begin(), req->labels().end())));
    containerd::events::SnapshotCommit ev;
    ev.set_key(req->key());
    ev.set_name(req->name());
    PublishEvent(exchange_, c.ns, "/snapshot/commit", ev);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext* ctx,
                                      const api::RemoveSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  return HandleNoNamespace("Snapshots.Remove", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    spdlog::debug("remove snapshot ns={} sn={} key={}", c.ns, req->snapshotter(), req->key());
    RETURN_IF_ERROR(sn->Remove(c, req->key()));
    containerd::events::SnapshotRemove ev;
    ev.set_key(req->key());
    PublishEvent(exchange_, c.ns, "/snapshot/remove", ev);
    gc_.Trigger(false);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext* ctx, const api::StatSnapshotRequest* req,
                                    api::StatSnapshotResponse* resp) {
  return HandleNoNamespace("Snapshots.Stat", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    ASSIGN_OR_RETURN(snapshots::Info info, sn->Stat(c, req->key()));
    InfoToProto(info, resp->mutable_info());
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Update(grpc::ServerContext* ctx,
                                      const api::UpdateSnapshotRequest* req,
                                      api::UpdateSnapshotResponse* resp) {
  return HandleNoNamespace("Snapshots.Update", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    snapshots::Info in;
    in.name = req->info().name();
    in.labels = Labels(req->info().labels().begin(), req->info().labels().end());
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("update snapshot ns={} sn={} name={} paths={}", c.ns, req->snapshotter(),
                  in.name, paths.size());
    ASSIGN_OR_RETURN(snapshots::Info info, sn->Update(c, in, paths));
    InfoToProto(info, resp->mutable_info());
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::List(grpc::ServerContext* ctx,
                                    const api::ListSnapshotsRequest* req,
                                    grpc::ServerWriter<api::ListSnapshotsResponse>* writer) {
  return HandleNoNamespace("Snapshots.List", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    api::ListSnapshotsResponse batch;
    bool gone = false;
    Status s = sn->Walk(
        c,
        [&](const snapshots::Info& info) -> Status {
          InfoToProto(info, batch.add_info());
          if (batch.info_size() >= kListBatch) {
            if (!writer->Write(batch)) {
              gone = true;
              return Status(Code::kCanceled, "client gone");
            }
            batch.Clear();
          }
          return Status::Ok();
        },
        exprs);
    if (gone) return Status(Code::kCanceled, "client gone");
    RETURN_IF_ERROR(s);
    if (batch.info_size() > 0 && !writer->Write(batch)) {
      return Status(Code::kCanceled, "client gone");
    }
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext* ctx, const api::UsageRequest* req,
                                     api::UsageResponse* resp) {
  return HandleNoNamespace("Snapshots.Usage", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    ASSIGN_OR_RETURN(auto usage, sn->Usage(c, req->key()));
    resp->set_size(usage.size);
    resp->set_inodes(usage.inodes);
    return Status::Ok();
  });
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext* ctx, const api::CleanupRequest* req,
                                       google::protobuf::Empty*) {
  return HandleNoNamespace("Snapshots.Cleanup", [&]() -> Status {
    ASSIGN_OR_RETURN(auto r, Resolve(ctx, req->snapshotter()));
    auto& [sn, c] = r;
    return sn->Cleanup(c);
  });
}

}  // namespace berth::services
