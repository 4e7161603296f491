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
berth::Status CheckDigest(const std::string& digest) {
  if (content::ValidateDigest(digest).ok()) return berth::Status::Ok();
  return InvalidArgument(Quote(digest) + " failed validation");
}

berth::Status ClientGone() { return berth::Status(Code::kCanceled, "client gone"); }

}  // namespace

grpc::Status ContentService::Info(grpc::ServerContext* ctx, const api::InfoRequest* req,
                                  api::InfoResponse* resp) {
  return Handle("Content.Info", ctx, [&](const CallCtx& c) -> berth::Status {
    RETURN_IF_ERROR(CheckDigest(req->digest()));
    ASSIGN_OR_RETURN(content::Info info, store_.Info(c.ns, req->digest()));
    InfoToProto(info, resp->mutable_info());
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::Update(grpc::ServerContext* ctx, const api::UpdateRequest* req,
                                    api::UpdateResponse* resp) {
  return Handle("Content.Update", ctx, [&](const CallCtx& c) -> berth::Status {
    const auto& in = req->info();
    RETURN_IF_ERROR(CheckDigest(in.digest()));
    content::Info info;
    info.digest = in.digest();
    info.labels = Labels(in.labels().begin(), in.labels().end());
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    spdlog::debug("content update ns={} digest={} paths={}", c.ns, info.digest, paths.size());
    ASSIGN_OR_RETURN(content::Info updated, store_.Update(c.ns, info, paths));
    InfoToProto(updated, resp->mutable_info());
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::List(grpc::ServerContext* ctx, const api::ListContentRequest* req,
                                  grpc::ServerWriter<api::ListContentResponse>* writer) {
  return Handle("Content.List", ctx, [&](const CallCtx& c) -> berth::Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto infos, store_.List(c.ns, exprs));
    api::ListContentResponse batch;
    for (const auto& info : infos) {
      InfoToProto(info, batch.add_info());
      if (static_cast<size_t>(batch.info_size()) >= kListBatch) {
        if (!writer->Write(batch)) return ClientGone();
        batch.Clear();
      }
    }
    if (batch.info_size() > 0 && !writer->Write(batch)) return ClientGone();
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::Delete(grpc::ServerContext* ctx, const api::DeleteContentRequest* req,
                                    google::protobuf::Empty*) {
  return Handle("Content.Delete", ctx, [&](const CallCtx& c) -> berth::Status {
    spdlog::debug("content delete ns={} digest={}", c.ns, req->digest());
    RETURN_IF_ERROR(CheckDigest(req->digest()));
    RETURN_IF_ERROR(store_.Delete(c.ns, c.lease, req->digest()));
    containerd::events::ContentDelete ev;
    ev.set_digest(req->digest());
    PublishEvent(exchange_, c.ns, "/content/delete", ev);
    gc_.Trigger(false);
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::Read(grpc::ServerContext* ctx, const api::ReadContentRequest* req,
                                  grpc::ServerWriter<api::ReadContentResponse>* writer) {
  return Handle("Content.Read", ctx, [&](const CallCtx& c) -> berth::Status {
    RETURN_IF_ERROR(CheckDigest(req->digest()));
    ASSIGN_OR_RETURN(std::unique_ptr<content::ReaderAt> reader,
                     store_.OpenReader(c.ns, req->digest()));
    const int64_t size = reader->Size();
    int64_t offset = std::max<int64_t>(req->offset(), 0);
    if (offset > size) {
      return berth::Status(Code::kOutOfRange,
                           "read past object length " + std::to_string(size) + " bytes");
    }
    // `size` is how much to read, not the blob size; clip it to the blob.
    int64_t n = req->size();
    if (n <= 0 || n > size - offset) n = size - offset;
    std::string buf(static_cast<size_t>(std::min(n, kReadChunk)), '\0');
    api::ReadContentResponse resp;
    for (int64_t done = 0; done < n;) {
      if (ctx->IsCancelled()) return ClientGone();
      size_t want = static_cast<size_t>(std::min(n - done, kReadChunk));
      ASSIGN_OR_RETURN(size_t got, reader->ReadAt(buf.data(), want, offset + done));
      if (got == 0) {
        return berth::Status(Code::kDataLoss,
                             "content " + req->digest() + " ended before its size");
      }
      resp.set_offset(offset + done);
      resp.set_data(buf.data(), got);
      if (!writer->Write(resp)) return ClientGone();
      done += static_cast<int64_t>(got);
    }
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::Status(grpc::ServerContext* ctx, const api::StatusRequest* req,
                                    api::StatusResponse* resp) {
  return Handle("Content.Status", ctx, [&](const CallCtx& c) -> berth::Status {
    auto st = store_.Status(c.ns, req->ref());
    if (!st) return st.error().Wrap("could not get status for ref " + Quote(req->ref()));
    StatusToProto(*st, resp->mutable_status());
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::ListStatuses(grpc::ServerContext* ctx,
                                          const api::ListStatusesRequest* req,
                                          api::ListStatusesResponse* resp) {
  return Handle("Content.ListStatuses", ctx, [&](const CallCtx& c) -> berth::Status {
    std::vector<std::string> exprs(req->filters().begin(), req->filters().end());
    ASSIGN_OR_RETURN(auto statuses, store_.ListStatuses(c.ns, exprs));
    for (const auto& st : statuses) StatusToProto(st, resp->add_statuses());
    return berth::Status::Ok();
  });
}

grpc::Status ContentService::Write(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<api::WriteContentResponse, api::WriteContentRequest>* stream) {
  return Handle("Content.Write", ctx, [&](const CallCtx& c) -> berth::Status {
    const std::string& ns = c.ns;
    const std::string& lease = c.lease;
    api::WriteContentRequest req;
    if (!stream->Read(&req)) return berth::Status::Ok();  // client left before saying anything
    const std::string ref = req.ref();
    if (ref.empty()) return InvalidArgument("first message must have a reference");
    int64_t total = req.total();
    std::string expected = req.expected();
    spdlog::debug("content write ns={} ref={} total={} expected={}", ns, ref, total, expected);
    ASSIGN_OR_RETURN(std::unique_ptr<content::Writer> w,
                     store_.OpenWriter(ns, lease, ref, total, expected));

    for (;;) {
      api::WriteContentResponse resp;
      resp.set_action(req.action());
      ASSIGN_OR_RETURN(content::IngestStatus st, w->Status());
      resp.set_offset(st.offset);

      if (!req.expected().empty()) {
        if (!expected.empty() && expected != req.expected()) {
          spdlog::debug("content write ref={}: commit digest {} differs from writer digest {}", ref,
                        req.expected(), expected);
        }
        expected = req.expected();
        if (store_.Info(ns, expected).has_value()) {
          // Someone committed it meanwhile: this ingest is pointless (a success for fetchers).
          (void)w->Close();
          w.reset();
          if (berth::Status a = store_.Abort(ns, lease, ref);
              !a.ok() && a.code() != Code::kNotFound) {
            spdlog::warn("content write ref={}: abort after concurrent commit: {}", ref,
                         a.ToString());
          }
          return AlreadyExists("blob with expected digest " + expected + " exists");
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
          *resp.mutable_started_at() = ToTimestamp(st.started_at);
          *resp.mutable_updated_at() = ToTimestamp(st.updated_at);
          resp.set_total(total);
          break;
        case api::WRITE:
        case api::COMMIT: {
          if (req.offset() > 0 && req.offset() != st.offset) {
            return berth::Status(Code::kOutOfRange, "write @" + std::to_string(req.offset()) +
                                                        " must occur at current offset " +
                                                        std::to_string(st.offset));
          }
          if (req.offset() == 0 && st.offset > 0) {
            if (berth::Status s = w->Truncate(0); !s.ok()) return s.Wrap("truncate failed");
            resp.set_offset(0);
          }
          if (!req.data().empty()) {
            RETURN_IF_ERROR(w->Write(req.data()));
            resp.set_offset(resp.offset() + static_cast<int64_t>(req.data().size()));
          }
          if (req.action() == api::COMMIT) {
            Labels labels(req.labels().begin(), req.labels().end());
            if (berth::Status s = w->Commit(total, expected, labels); !s.ok()) {
              if (s.code() != Code::kAlreadyExists) {
                spdlog::debug("content write ref={} commit: {}", ref, s.ToString());
              }
              return s;
            }
          }
          resp.set_digest(w->Digest());
          break;
        }
        default:
          return InvalidArgument("unknown write action " + std::to_string(req.action()));
      }

      if (!stream->Write(resp)) return ClientGone();
      if (req.action() == api::COMMIT) return berth::Status::Ok();
      if (!stream->Read(&req)) return berth::Status::Ok();  // EOF: the ingest stays resumable
    }
  });
}

grpc::Status ContentService::Abort(grpc::ServerContext* ctx, const api::AbortRequest* req,
                                   google::protobuf::Empty*) {
  return Handle("Content.Abort", ctx, [&](const CallCtx& c) -> berth::Status {
    spdlog::debug("content abort ns={} ref={}", c.ns, req->ref());
    return store_.Abort(c.ns, c.lease, req->ref());
  });
}

}  // namespace berth::services
