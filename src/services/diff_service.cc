#include "services/diff_service.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common/log.h"
#include "diff/apply.h"
#include "services/grpc_util.h"

namespace berth::services {
namespace {

namespace api = containerd::services::diff::v1;

constexpr char kUncompressedTar[] = "application/vnd.oci.image.layer.v1.tar";

bool HasOption(const containerd::types::Mount& m, std::string_view opt) {
  for (const auto& o : m.options()) {
    if (o == opt) return true;
  }
  return false;
}

// The value of `key=` among the options, or "".
std::string OptionValue(const containerd::types::Mount& m, std::string_view key) {
  for (const auto& o : m.options()) {
    if (o.size() > key.size() && o.starts_with(key) && o[key.size()] == '=') {
      return o.substr(key.size() + 1);
    }
  }
  return "";
}

// Mounts `mounts` in order on a fresh temp dir; unmounts (lazily, innermost first) and
// removes the dir when destroyed.
class TempMount {
 public:
  static Result<std::unique_ptr<TempMount>> Make(
      const std::string& base, const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts) {
    if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) {
      return std::unexpected(StatusFromErrno(errno, "mkdir " + base));
    }
    std::string tmpl = base + "/diff-XXXXXX";
    if (!::mkdtemp(tmpl.data())) return std::unexpected(StatusFromErrno(errno, "mkdtemp"));
    auto t = std::unique_ptr<TempMount>(new TempMount(tmpl));
    for (const auto& m : mounts) {
      unsigned long flags = 0;
      std::string data;
      for (const auto& o : m.options()) {
        if (o == "ro") {
          flags |= MS_RDONLY;
        } else if (o == "rw" || o == "defaults") {
        } else if (o == "bind") {
          flags |= MS_BIND;
        } else if (o == "rbind") {
          flags |= MS_BIND | MS_REC;
        } else if (o == "nosuid") {
          flags |= MS_NOSUID;
        } else if (o == "nodev") {
          flags |= MS_NODEV;
        } else if (o == "noexec") {
          flags |= MS_NOEXEC;
        } else {
          if (!data.empty()) data += ',';
          data += o;
        }
      }
      std::string type = m.type() == "bind" ? "none" : m.type();
      if (::mount(m.source().c_str(), t->dir_.c_str(), type.c_str(), flags & ~MS_RDONLY,
                  data.empty() ? nullptr : data.c_str()) != 0) {
        return std::unexpected(StatusFromErrno(errno, "mount " + m.type() + " " + m.source()));
      }
      ++t->mounted_;
      if ((flags & MS_BIND) && (flags & MS_RDONLY)) {
        ::mount(nullptr, t->dir_.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr);
      }
    }
    return t;
  }
  ~TempMount() {
    for (; mounted_ > 0; --mounted_) {
      if (::umount2(dir_.c_str(), MNT_DETACH) != 0) {
        spdlog::warn("unmount {}: {}", dir_, std::strerror(errno));
      }
    }
    ::rmdir(dir_.c_str());
  }
  const std::string& dir() const { return dir_; }

 private:
  explicit TempMount(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  int mounted_ = 0;
};

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

    const auto& mounts = req->mounts();
    std::string target;
    diff::ApplyOptions opts;
    std::unique_ptr<TempMount> tmp;
    std::string upper = mounts.size() == 1 && mounts[0].type() == "overlay"
                            ? OptionValue(mounts[0], "upperdir")
                            : "";
    if (!upper.empty()) {
      target = upper;
      opts.mode = diff::WhiteoutMode::kOverlay;
      std::string lower = OptionValue(mounts[0], "lowerdir");
      for (size_t i = 0; !lower.empty() && i <= lower.size();) {
        size_t j = lower.find(':', i);
        if (j == std::string::npos) j = lower.size();
        if (j > i) opts.lowerdirs.push_back(lower.substr(i, j - i));
        i = j + 1;
      }
    } else if (mounts.size() == 1 && mounts[0].type() == "bind" && !HasOption(mounts[0], "ro")) {
      target = mounts[0].source();
    } else {
      if (mounts.empty()) return ToGrpc(InvalidArgument("no mounts to apply the diff to"));
      auto t = TempMount::Make(tmp_base_, mounts);
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

grpc::Status DiffService::Diff(grpc::ServerContext*, const api::DiffRequest*, api::DiffResponse*) {
  return ToGrpc(Unimplemented("Diff (comparing mounts) is not implemented by berth yet"));
}

}  // namespace berth::services
