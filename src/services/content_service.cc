#include "services/content_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/log.h"
#include "content/digest.h"
#include "github.com/containerd/containerd/api/events/content.pb.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::content::v1;

constexpr size_t kListBatch = 100;
constexpr int64_t kReadChunk = 1 << 20;

void InfoToProto(const content::Info& in, api::Info* out) {
  out->set_digest(in.digest);
  out->set_size(in.size);
  *out->mutable_created_at() = ToTimestamp(in.created_at);
  *out->mutable_updated_at() = ToTimestamp(in.updated_at);
  for (const auto& [k, v] : in.labels) (*out->mutable_labels())[k] = v;
}

void StatusToProto(const content::IngestStatus& in, api::Status* out) {
  *out->mutable_started_at() = ToTimestamp(in.started_at);
  *out->mutable_updated_at() = ToTimestamp(in.updated_at);
  out->set_ref(in.ref);
  out->set_offset(in.offset);
  out->set_total(in.total);
  out->set_expected(in.expected);
}

// containerd answers a malformed digest with InvalidArgument "%q failed validation".
grpc::Status DigestError(const std::string& digest) {
  return ToGrpc(InvalidArgument(Quote(digest) + " failed validation"));
}

std::string LeaseOf(const grpc::ServerContext* ctx) { return LeaseFromContext(ctx).value_or(""); }

}  // namespace

grpc::Status ContentService::Info(grpc::ServerContext* ctx, const api::InfoRequest* req,
                                  api::InfoResponse* resp) {
  return Guard("Content.Info", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    if (!content::ValidateDigest(req->digest()).ok()) return DigestError(req->digest());
    auto info = store_.Info(*ns, req->digest());
    if (!info) return ToGrpc(info.error());
    InfoToProto(*info, resp->mutable_info());
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::Update(grpc::ServerContext* ctx, const api::UpdateRequest* req,
                                    api::UpdateResponse* resp) {
  return Guard("Content.Update", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    const auto& in = req->info();
    if (!content::ValidateDigest(in.digest()).ok()) return DigestError(in.digest());
    content::Info info;
    info.digest = in.digest();
    info.labels = Labels(in.labels().begin(), in.labels().end());
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("content update ns={} digest={} paths={}", *ns, info.digest, paths.size());
    auto updated = store_.Update(*ns, info, paths);
    if (!updated) return ToGrpc(updated.error());
    InfoToProto(*updated, resp->mutable_info());
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::List(grpc::ServerContext* ctx, const api::ListContentRequest* req,
                                  grpc::ServerWriter<api::ListContentResponse>* writer) {
  return Guard("Content.List", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto infos = store_.List(*ns, exprs);
    if (!infos) return ToGrpc(infos.error());
    api::ListContentResponse batch;
    for (const auto& info : *infos) {
      InfoToProto(info, batch.add_info());
      if (static_cast<size_t>(batch.info_size()) >= kListBatch) {
        if (!writer->Write(batch)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
        batch.Clear();
      }
    }
    if (batch.info_size() > 0 && !writer->Write(batch)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::Delete(grpc::ServerContext* ctx, const api::DeleteContentRequest* req,
                                    google::protobuf::Empty*) {
  return Guard("Content.Delete", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    spdlog::debug("content delete ns={} digest={}", *ns, req->digest());
    if (!content::ValidateDigest(req->digest()).ok()) return DigestError(req->digest());
    if (berth::Status s = store_.Delete(*ns, LeaseOf(ctx), req->digest()); !s.ok()) {
      return ToGrpc(s);
    }
    containerd::events::ContentDelete ev;
    ev.set_digest(req->digest());
    PublishEvent(exchange_, *ns, "/content/delete", ev);
    gc_.Trigger(false);
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::Read(grpc::ServerContext* ctx, const api::ReadContentRequest* req,
                                  grpc::ServerWriter<api::ReadContentResponse>* writer) {
  return Guard("Content.Read", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    if (!content::ValidateDigest(req->digest()).ok()) return DigestError(req->digest());
    auto reader = store_.OpenReader(*ns, req->digest());
    if (!reader) return ToGrpc(reader.error());
    const int64_t size = (*reader)->Size();
    int64_t offset = std::max<int64_t>(req->offset(), 0);
    if (offset > size) {
      return ToGrpc(berth::Status(Code::kOutOfRange,
                                  "read past object length " + std::to_string(size) + " bytes"));
    }
    // `size` is how much to read, not the blob size; clip it to the blob.
    int64_t n = req->size();
    if (n <= 0 || n > size - offset) n = size - offset;
    std::string buf(static_cast<size_t>(std::min(n, kReadChunk)), '\0');
    api::ReadContentResponse resp;
    for (int64_t done = 0; done < n;) {
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      size_t want = static_cast<size_t>(std::min(n - done, kReadChunk));
      auto got = (*reader)->ReadAt(buf.data(), want, offset + done);
      if (!got) return ToGrpc(got.error());
      if (*got == 0) {
        return ToGrpc(
            berth::Status(Code::kDataLoss, "content " + req->digest() + " ended before its size"));
      }
      resp.set_offset(offset + done);
      resp.set_data(buf.data(), *got);
      if (!writer->Write(resp)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      done += static_cast<int64_t>(*got);
    }
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::Status(grpc::ServerContext* ctx, const api::StatusRequest* req,
                                    api::StatusResponse* resp) {
  return Guard("Content.Status", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    auto st = store_.Status(*ns, req->ref());
    if (!st) {
      return ToGrpc(st.error().Wrap("could not get status for ref " + Quote(req->ref())));
    }
    StatusToProto(*st, resp->mutable_status());
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::ListStatuses(grpc::ServerContext* ctx,
                                          const api::ListStatusesRequest* req,
                                          api::ListStatusesResponse* resp) {
  return Guard("Content.ListStatuses", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    auto statuses = store_.ListStatuses(*ns, exprs);
    if (!statuses) return ToGrpc(statuses.error());
    for (const auto& st : *statuses) StatusToProto(st, resp->add_statuses());
    return grpc::Status::OK;
  });
}

grpc::Status ContentService::Write(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<api::WriteContentResponse, api::WriteContentRequest>* stream) {
  return Guard("Content.Write", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    const std::string lease = LeaseOf(ctx);
    api::WriteContentRequest req;
    if (!stream->Read(&req)) return grpc::Status::OK;  // client left before saying anything
    const std::string ref = req.ref();
    if (ref.empty()) {
      return ToGrpc(InvalidArgument("first message must have a reference"));
    }
    int64_t total = req.total();
    std::string expected = req.expected();
    spdlog::debug("content write ns={} ref={} total={} expected={}", *ns, ref, total, expected);
    auto opened = store_.OpenWriter(*ns, lease, ref, total, expected);
    if (!opened) return ToGrpc(opened.error());
    std::unique_ptr<content::Writer> w = std::move(*opened);

    for (;;) {
      api::WriteContentResponse resp;
      resp.set_action(req.action());
      auto st = w->Status();
      if (!st) return ToGrpc(st.error());
      resp.set_offset(st->offset);

      if (!req.expected().empty()) {
        if (!expected.empty() && expected != req.expected()) {
          spdlog::debug("content write ref={}: commit digest {} differs from writer digest {}", ref,
                        req.expected(), expected);
        }
        expected = req.expected();
        if (store_.Info(*ns, expected).has_value()) {
          // Someone committed it meanwhile: this ingest is pointless (a success for fetchers).
          (void)w->Close();
          w.reset();
          if (berth::Status a = store_.Abort(*ns, lease, ref);
              !a.ok() && a.code() != Code::kNotFound) {
            spdlog::warn("content write ref={}: abort after concurrent commit: {}", ref,
                         a.ToString());
          }
          return ToGrpc(AlreadyExists("blob with expected digest " + expected + " exists"));
        }
      }
      if (req.total() > 0) {
        if (total > 0 && req.total() != total) {
          spdlog::debug("content write ref={}: commit size {} differs from writer size {}", ref,
                        req.total(), total);
        }
        total = req.total();
      }

      switch (req.action()) {
        case api::STAT:
          resp.set_digest(w->Digest());
          *resp.mutable_started_at() = ToTimestamp(st->started_at);
          *resp.mutable_updated_at() = ToTimestamp(st->updated_at);
          resp.set_total(total);
          break;
        case api::WRITE:
        case api::COMMIT: {
          if (req.offset() > 0 && req.offset() != st->offset) {
            return ToGrpc(berth::Status(Code::kOutOfRange, "write @" +
                                                               std::to_string(req.offset()) +
                                                               " must occur at current offset " +
                                                               std::to_string(st->offset)));
          }
          if (req.offset() == 0 && st->offset > 0) {
            if (berth::Status s = w->Truncate(0); !s.ok()) {
              return ToGrpc(s.Wrap("truncate failed"));
            }
            resp.set_offset(0);
          }
          if (!req.data().empty()) {
            if (berth::Status s = w->Write(req.data()); !s.ok()) return ToGrpc(s);
            resp.set_offset(resp.offset() + static_cast<int64_t>(req.data().size()));
          }
          if (req.action() == api::COMMIT) {
            Labels labels(req.labels().begin(), req.labels().end());
            if (berth::Status s = w->Commit(total, expected, labels); !s.ok()) {
              if (s.code() != Code::kAlreadyExists) {
                spdlog::debug("content write ref={} commit: {}", ref, s.ToString());
              }
              return ToGrpc(s);
            }
          }
          resp.set_digest(w->Digest());
          break;
        }
        default:
          return ToGrpc(InvalidArgument("unknown write action " + std::to_string(req.action())));
      }

      if (!stream->Write(resp)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
      if (req.action() == api::COMMIT) return grpc::Status::OK;
      if (!stream->Read(&req)) return grpc::Status::OK;  // EOF: the ingest stays resumable
    }
  });
}

grpc::Status ContentService::Abort(grpc::ServerContext* ctx, const api::AbortRequest* req,
                                   google::protobuf::Empty*) {
  return Guard("Content.Abort", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    spdlog::debug("content abort ns={} ref={}", *ns, req->ref());
    return ToGrpc(store_.Abort(*ns, LeaseOf(ctx), req->ref()));
  });
}

}  // namespace berth::services
