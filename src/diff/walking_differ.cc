#include "diff/walking_differ.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>

#include "common/log.h"
#include "diff/apply.h"
#include "diff/compare.h"

namespace berth::diff {
namespace {

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An ingest ref for a Compare that named none: "<unix nanos>-<4 base64url chars>", the shape
// containerd's walking differ uses.
std::string UniqueRef() {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  uint32_t r = rd() & 0xffffff;
  std::string suffix;
  for (int shift = 18; shift >= 0; shift -= 6) suffix += kB64[(r >> shift) & 63];
  return std::to_string(NowNanos()) + "-" + suffix;
}

// "a:b::c" → {"a", "b", "c"}: overlay's lowerdir= list, top first.
std::vector<std::string> SplitLowerdirs(const std::string& lower) {
  std::vector<std::string> out;
  for (size_t i = 0; !lower.empty() && i <= lower.size();) {
    size_t j = lower.find(':', i);
    if (j == std::string::npos) j = lower.size();
    if (j > i) out.push_back(lower.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

Result<Descriptor> WalkingDiffer::Apply(const Ctx& ctx, const Descriptor& layer,
                                        const std::vector<Mount>& mounts) {
  auto reader = content_.OpenReader(ctx.ns, layer.digest);
  if (!reader) {
    return std::unexpected(reader.error().Wrap("failed to get reader from content store"));
  }
  RETURN_IF_ERROR(CompressionForMediaType(layer.media_type));

  std::string target;
  ApplyOptions opts;
  opts.max_expansion_ratio = max_expansion_ratio_;
  std::unique_ptr<TempMount> tmp;
  std::string upper = mounts.size() == 1 && mounts[0].type == "overlay"
                          ? MountOptionValue(mounts[0], "upperdir")
                          : "";
  if (!upper.empty()) {
    target = upper;
    opts.mode = WhiteoutMode::kOverlay;
    opts.lowerdirs = SplitLowerdirs(MountOptionValue(mounts[0], "lowerdir"));
  } else if (mounts.size() == 1 && mounts[0].type == "bind" && !HasMountOption(mounts[0], "ro")) {
    target = mounts[0].source;
  } else {
    if (mounts.empty()) return std::unexpected(InvalidArgument("no mounts to apply the diff to"));
    ASSIGN_OR_RETURN(tmp, TempMount::Make(tmp_base_, mounts, "apply-"));
    target = tmp->dir();
  }
  spdlog::debug("apply diff ns={} digest={} media_type={} target={} overlay={}", ctx.ns,
                layer.digest, layer.media_type, target, opts.mode == WhiteoutMode::kOverlay);
  auto r = ApplyLayer(**reader, layer.media_type, target, opts);
  tmp.reset();  // unmount before answering
  if (!r) {
    spdlog::warn("apply diff {}: {}", layer.digest, r.error().ToString());
    return std::unexpected(r.error().Wrap("failed to extract layer " + layer.digest));
  }
  return Descriptor{.media_type = kUncompressedTarMediaType, .digest = r->digest, .size = r->size};
}

Result<Descriptor> WalkingDiffer::Compare(const Ctx& ctx, const std::vector<Mount>& lower_mounts,
                                          const std::vector<Mount>& upper_mounts,
                                          const CompareOptions& o) {
  const std::string media_type = o.media_type.empty() ? kDefaultDiffMediaType : o.media_type;
  ASSIGN_OR_RETURN(Compression compression, DiffCompression(media_type));
  const bool own_ref = o.ref.empty();
  const std::string ref = own_ref ? UniqueRef() : o.ref;
  spdlog::debug("diff ns={} ref={} media_type={} left={} right={}", ctx.ns, ref, media_type,
                lower_mounts.size(), upper_mounts.size());

  // Both sides read-only: the right side may be the live upperdir of a running container.
  auto lower = TempMount::Make(tmp_base_, ReadonlyMounts(lower_mounts), "diff-lower-");
  if (!lower) return std::unexpected(lower.error().Wrap("failed to mount lower"));
  auto upper = TempMount::Make(tmp_base_, ReadonlyMounts(upper_mounts), "diff-upper-");
  if (!upper) return std::unexpected(upper.error().Wrap("failed to mount upper"));

  auto opened = content_.OpenWriter(ctx.ns, ctx.lease, ref, 0, "");
  if (!opened) return std::unexpected(opened.error().Wrap("failed to open writer"));
  std::unique_ptr<content::Writer> w = std::move(*opened);
  // Errors after this point drop what was written; a ref we made up goes away entirely.
  auto fail = [&](const Status& s) {
    (void)w->Close();
    if (own_ref) {
      if (Status a = content_.Abort(ctx.ns, ctx.lease, ref);
          !a.ok() && a.code() != Code::kNotFound) {
        spdlog::warn("diff ref={}: abort: {}", ref, a.ToString());
      }
    }
    spdlog::debug("diff ref={}: {}", ref, s.ToString());
    return std::unexpected(s);
  };
  if (!own_ref) {
    if (Status s = w->Truncate(0); !s.ok()) return fail(s);
  }
  DiffOptions opts{.compression = compression, .cancelled = o.cancelled};
  auto written = WriteDiff(
      lower->get()->dir(), upper->get()->dir(), [&](std::string_view b) { return w->Write(b); },
      opts);
  lower->reset();
  upper->reset();
  if (!written) return fail(written.error().Wrap("failed to write diff"));

  Labels labels = o.labels;
  const bool compressed = compression != Compression::kNone;
  if (compressed) labels[kUncompressedLabel] = written->uncompressed_digest;
  const std::string digest = w->Digest();
  if (Status s = w->Commit(0, digest, labels); !s.ok() && s.code() != Code::kAlreadyExists) {
    return fail(s.Wrap("failed to commit"));
  }
  auto info = content_.Info(ctx.ns, digest);
  if (!info) return std::unexpected(info.error().Wrap("failed to get info from content store"));
  // A blob that existed already keeps its labels; it only gains the uncompressed one.
  if (compressed && !info->labels.contains(kUncompressedLabel)) {
    info->labels[kUncompressedLabel] = written->uncompressed_digest;
    auto updated = content_.Update(ctx.ns, *info, {std::string("labels.") + kUncompressedLabel});
    if (!updated) return std::unexpected(updated.error().Wrap("error setting uncompressed label"));
  }
  return Descriptor{.media_type = media_type, .digest = info->digest, .size = info->size};
}

}  // namespace berth::diff
