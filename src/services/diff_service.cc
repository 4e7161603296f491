#include "services/diff_service.h"

#include <cstdint>
#include <random>
#include <vector>

#include "common/log.h"
#include "common/mount.h"
#include "diff/apply.h"
#include "diff/compare.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::diff::v1;

constexpr char kUncompressedTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kUncompressedLabel[] = "containerd.io/uncompressed";

std::vector<Mount> FromProto(
    const google::protobuf::RepeatedPtrField<containerd::types::Mount>& in) {
  std::vector<Mount> out;
  out.reserve(in.size());
  for (const auto& m : in) {
    out.push_back({m.type(), m.source(), {m.options().begin(), m.options().end()}});
  }
  return out;
}

// An ingest ref for a Diff call that named none: "<unix nanos>-<4 base64url chars>", the
// shape containerd's walking differ uses.
std::string UniqueRef() {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  uint32_t r = rd() & 0xffffff;
  std::string suffix;
  for (int shift = 18; shift >= 0; shift -= 6) suffix += kB64[(r >> shift) & 63];
  return std::to_string(NowNanos()) + "-" + suffix;
}

}  // namespace

grpc::Status DiffService::Apply(grpc::ServerContext* ctx, const api::ApplyRequest* req,
                                api::ApplyResponse* resp) {
  return Guard("Diff.Apply", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    const auto& desc = req->diff();
    auto reader = content_.OpenReader(*ns, desc.digest());
    if (!reader) return ToGrpc(reader.error().Wrap("failed to get reader from content store"));
    if (auto c = diff::CompressionForMediaType(desc.media_type()); !c) return ToGrpc(c.error());

    const std::vector<Mount> mounts = FromProto(req->mounts());
    std::string target;
    diff::ApplyOptions opts;
    opts.max_expansion_ratio = max_expansion_ratio_;
    std::unique_ptr<TempMount> tmp;
    std::string upper = mounts.size() == 1 && mounts[0].type == "overlay"
                            ? MountOptionValue(mounts[0], "upperdir")
                            : "";
    if (!upper.empty()) {
      target = upper;
      opts.mode = diff::WhiteoutMode::kOverlay;
      std::string lower = MountOptionValue(mounts[0], "lowerdir");
      for (size_t i = 0; !lower.empty() && i <= lower.size();) {
        size_t j = lower.find(':', i);
        if (j == std::string::npos) j = lower.size();
        if (j > i) opts.lowerdirs.push_back(lower.substr(i, j - i));
        i = j + 1;
      }
    } else if (mounts.size() == 1 && mounts[0].type == "bind" && !HasMountOption(mounts[0], "ro")) {
      target = mounts[0].source;
    } else {
      if (mounts.empty()) return ToGrpc(InvalidArgument("no mounts to apply the diff to"));
      auto t = TempMount::Make(tmp_base_, mounts, "apply-");
      if (!t) return ToGrpc(t.error());
      tmp = std::move(*t);
      target = tmp->dir();
    }
    spdlog::debug("apply diff ns={} digest={} media_type={} target={} overlay={}", *ns,
                  desc.digest(), desc.media_type(), target,
                  opts.mode == diff::WhiteoutMode::kOverlay);
    auto r = diff::ApplyLayer(**reader, desc.media_type(), target, opts);
    tmp.reset();  // unmount before answering
    if (!r) {
      spdlog::warn("apply diff {}: {}", desc.digest(), r.error().ToString());
      return ToGrpc(r.error().Wrap("failed to extract layer " + desc.digest()));
    }
    auto* out = resp->mutable_applied();
    out->set_media_type(kUncompressedTar);
    out->set_digest(r->digest);
    out->set_size(r->size);
    return grpc::Status::OK;
  });
}

grpc::Status DiffService::Diff(grpc::ServerContext* ctx, const api::DiffRequest* req,
                               api::DiffResponse* resp) {
  return Guard("Diff.Diff", [&] {
    auto ns = RequireNamespace(ctx);
    if (!ns) return ToGrpc(ns.error());
    const std::string lease = LeaseFromContext(ctx).value_or("");
    const std::string media_type =
        req->media_type().empty() ? diff::kDefaultDiffMediaType : req->media_type();
    auto compression = diff::DiffCompression(media_type);
    if (!compression) return ToGrpc(compression.error());
    const bool own_ref = req->ref().empty();
    const std::string ref = own_ref ? UniqueRef() : req->ref();
    spdlog::debug("diff ns={} ref={} media_type={} left={} right={}", *ns, ref, media_type,
                  req->left_size(), req->right_size());

    // Both sides read-only: the right side may be the live upperdir of a running container.
    auto lower = TempMount::Make(tmp_base_, ReadonlyMounts(FromProto(req->left())), "diff-lower-");
    if (!lower) return ToGrpc(lower.error().Wrap("failed to mount lower"));
    auto upper = TempMount::Make(tmp_base_, ReadonlyMounts(FromProto(req->right())), "diff-upper-");
    if (!upper) return ToGrpc(upper.error().Wrap("failed to mount upper"));

    auto opened = content_.OpenWriter(*ns, lease, ref, 0, "");
    if (!opened) return ToGrpc(opened.error().Wrap("failed to open writer"));
    std::unique_ptr<content::Writer> w = std::move(*opened);
    // Errors after this point drop what was written; a ref we made up goes away entirely.
    auto fail = [&](const Status& s) {
      (void)w->Close();
      if (own_ref) {
        if (Status a = content_.Abort(*ns, lease, ref); !a.ok() && a.code() != Code::kNotFound) {
          spdlog::warn("diff ref={}: abort: {}", ref, a.ToString());
        }
      }
      spdlog::debug("diff ref={}: {}", ref, s.ToString());
      return ToGrpc(s);
    };
    if (!own_ref) {
      if (Status s = w->Truncate(0); !s.ok()) return fail(s);
    }
    diff::DiffOptions opts{.compression = *compression,
                           .cancelled = [ctx] { return ctx->IsCancelled(); }};
    auto written = diff::WriteDiff(
        lower->get()->dir(), upper->get()->dir(), [&](std::string_view b) { return w->Write(b); },
        opts);
    lower->reset();
    upper->reset();
    if (!written) return fail(written.error().Wrap("failed to write diff"));

    Labels labels(req->labels().begin(), req->labels().end());
    const bool compressed = *compression != diff::Compression::kNone;
    if (compressed) labels[kUncompressedLabel] = written->uncompressed_digest;
    const std::string digest = w->Digest();
    if (Status s = w->Commit(0, digest, labels); !s.ok() && s.code() != Code::kAlreadyExists) {
      return fail(s.Wrap("failed to commit"));
    }
    auto info = content_.Info(*ns, digest);
    if (!info) return ToGrpc(info.error().Wrap("failed to get info from content store"));
    // A blob that existed already keeps its labels; it only gains the uncompressed one.
    if (compressed && !info->labels.contains(kUncompressedLabel)) {
      info->labels[kUncompressedLabel] = written->uncompressed_digest;
      auto updated = content_.Update(*ns, *info, {std::string("labels.") + kUncompressedLabel});
      if (!updated) return ToGrpc(updated.error().Wrap("error setting uncompressed label"));
    }
    auto* out = resp->mutable_diff();
    out->set_media_type(media_type);
    out->set_digest(info->digest);
    out->set_size(info->size);
    return grpc::Status::OK;
  });
}

}  // namespace berth::services
