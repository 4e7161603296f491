#include "client/image.h"

#include <google/protobuf/empty.pb.h>

#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "common/validate.h"
#include "content/digest.h"
#include "github.com/containerd/containerd/api/services/content/v1/content.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::client {
namespace {

namespace capi = containerd::services::content::v1;
namespace dapi = containerd::services::diff::v1;
namespace sapi = containerd::services::snapshots::v1;
using containerd::types::Descriptor;
using nlohmann::json;

constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kUncompressedLabel[] = "containerd.io/uncompressed";
// Manifests, indexes and configs are small; a bigger "manifest" is not one.
constexpr int64_t kMaxMetadataBlob = 8 << 20;
constexpr int kMaxIndexDepth = 8;

Result<std::string> ReadBlob(const Client& client, const Descriptor& desc, const char* what) {
  auto fail = [&](Status s) { return std::unexpected(s.Wrap(std::string("read ") + what)); };
  if (desc.size() > kMaxMetadataBlob) {
    return fail(InvalidArgument(desc.digest() + " is " + std::to_string(desc.size()) +
                                " bytes, too big for a " + what));
  }
  auto stub = capi::Content::NewStub(client.channel());
  capi::ReadContentRequest req;
  req.set_digest(desc.digest());
  auto ctx = client.NewContext();
  auto reader = stub->Read(ctx.get(), req);
  std::string data;
  capi::ReadContentResponse resp;
  while (reader->Read(&resp)) {
    if (static_cast<int64_t>(data.size() + resp.data().size()) > kMaxMetadataBlob) {
      ctx->TryCancel();
      reader->Finish();
      return fail(InvalidArgument(desc.digest() + " is too big for a " + std::string(what)));
    }
    data += resp.data();
  }
  if (Status s = FromGrpc(reader->Finish()); !s.ok()) return fail(s);
  if (content::DigestOf(data) != desc.digest()) {
    return fail(Status(Code::kDataLoss, desc.digest() + ": content does not match its digest"));
  }
  return data;
}

Result<json> ReadJson(const Client& client, const Descriptor& desc, const char* what) {
  ASSIGN_OR_RETURN(std::string data, ReadBlob(client, desc, what));
  json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Err(Code::kInvalidArgument, std::string(what) + " " + desc.digest() + " is not JSON");
  }
  return j;
}

std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

Result<Descriptor> DescriptorFromJson(const json& j, const char* what) {
  Descriptor d;
  if (!j.is_object()) return Err(Code::kInvalidArgument, std::string(what) + ": not an object");
  d.set_media_type(StringField(j, "mediaType"));
  d.set_digest(StringField(j, "digest"));
  if (auto it = j.find("size"); it != j.end() && it->is_number_integer()) {
    d.set_size(it->get<int64_t>());
  }
  if (auto it = j.find("annotations"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (v.is_string()) (*d.mutable_annotations())[k] = v.get<std::string>();
    }
  }
  if (Status s = content::ValidateDigest(d.digest()); !s.ok()) return std::unexpected(s.Wrap(what));
  return d;
}

struct Candidate {
  Descriptor manifest;
  json body;
  int rank;
};

// The config's platform decides for manifests that do not state one. A config without
// os/architecture is taken as matching (nothing says otherwise).
Result<int> RankByConfig(const Client& client, const json& manifest, const Platform& want) {
  auto cfg = manifest.find("config");
  if (cfg == manifest.end()) return Err(Code::kInvalidArgument, "manifest has no config");
  ASSIGN_OR_RETURN(Descriptor cd, DescriptorFromJson(*cfg, "manifest config"));
  ASSIGN_OR_RETURN(json config, ReadJson(client, cd, "image config"));
  std::string os = StringField(config, "os"), arch = StringField(config, "architecture");
  if (os.empty() && arch.empty()) return 0;
  return PlatformRank(want, NormalizePlatform(os, arch, StringField(config, "variant")));
}

// Collects the manifests under `desc` that run on `want`.
Status Collect(const Client& client, const Descriptor& desc, const Platform& want,
               const json* platform_json, int depth, std::vector<Candidate>& out) {
  if (depth > kMaxIndexDepth) return InvalidArgument("image indexes nest too deep");
  const std::string& mt = desc.media_type();
  if (mt == kOciIndex || mt == kDockerList) {
    ASSIGN_OR_RETURN(json index, ReadJson(client, desc, "image index"));
    auto manifests = index.find("manifests");
    if (manifests == index.end() || !manifests->is_array()) return Status::Ok();
    for (const auto& m : *manifests) {
      ASSIGN_OR_RETURN(Descriptor child, DescriptorFromJson(m, "index entry"));
      const json* p = nullptr;
      if (auto it = m.find("platform"); it != m.end() && it->is_object()) p = &*it;
      RETURN_IF_ERROR(Collect(client, child, want, p, depth + 1, out));
    }
    return Status::Ok();
  }
  if (mt == kOciManifest || mt == kDockerManifest) {
    int rank;
    if (platform_json) {
      // The index says which platform this is: skip the others without reading them (their
      // blobs are usually not even fetched).
      rank = PlatformRank(want, NormalizePlatform(StringField(*platform_json, "os"),
                                  StringField(*platform_json, "architecture"),
                                  StringField(*platform_json, "variant")));
      if (rank < 0) return Status::Ok();
      ASSIGN_OR_RETURN(json body, ReadJson(client, desc, "manifest"));
      out.push_back({desc, std::move(body), rank});
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(json body, ReadJson(client, desc, "manifest"));
    ASSIGN_OR_RETURN(rank, RankByConfig(client, body, want));
    if (rank >= 0) out.push_back({desc, std::move(body), rank});
    return Status::Ok();
  }
  if (depth == 0) {
    return Unimplemented("cannot unpack an image whose target is " +
                         (mt.empty() ? std::string("of no media type") : Quote(mt)));
  }
  return Status::Ok();  // an index entry we do not know (attestations, ...): not a candidate
}

std::string UniquePart() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  uint32_t bits = rd() & 0xFFFFFF;
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count() %
               1'000'000'000;
  std::string out = std::to_string(nanos) + "-";
  for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(bits >> shift) & 0x3F];
  return out;
}

Status SetContentLabel(const Client& client, const std::string& lease, const std::string& digest,
                       const std::string& key, const std::string& value) {
  auto stub = capi::Content::NewStub(client.channel());
  capi::UpdateRequest req;
  req.mutable_info()->set_digest(digest);
  (*req.mutable_info()->mutable_labels())[key] = value;
  req.mutable_update_mask()->add_paths("labels." + key);
  capi::UpdateResponse resp;
  return FromGrpc(stub->Update(client.NewContext(lease).get(), req, &resp)).Wrap("label " + digest);
}

}  // namespace

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  for (const auto& d : diff_ids) {
    out.push_back(out.empty() ? d : content::DigestOf(out.back() + " " + d));
  }
  return out;
}

Result<ImageRootFs> ResolveRootFs(const Client& client, const Descriptor& target,
                                  const Platform& platform) {
  std::vector<Candidate> found;
  RETURN_IF_ERROR(Collect(client, target, platform, nullptr, 0, found));
  if (found.empty()) {
    return Err(Code::kNotFound,
               "no manifest for platform " + PlatformString(platform) + " in " + target.digest());
  }
  // The best platform; among equals, the first listed (containerd's ordered comparer).
  const Candidate* best = &found[0];
  for (const auto& c : found) {
    if (c.rank < best->rank) best = &c;
  }
  ImageRootFs out;
  out.manifest = best->manifest;
  const json& m = best->body;
  auto cfg = m.find("config");
  if (cfg == m.end())
    return Err(Code::kInvalidArgument, "manifest " + out.manifest.digest() + " has no config");
  ASSIGN_OR_RETURN(out.config, DescriptorFromJson(*cfg, "manifest config"));
  if (auto layers = m.find("layers"); layers != m.end() && layers->is_array()) {
    for (const auto& l : *layers) {
      ASSIGN_OR_RETURN(Descriptor d, DescriptorFromJson(l, "manifest layer"));
      out.layers.push_back(std::move(d));
    }
  }
  ASSIGN_OR_RETURN(json config, ReadJson(client, out.config, "image config"));
  auto rootfs = config.find("rootfs");
  if (rootfs != config.end() && rootfs->is_object()) {
    if (auto ids = rootfs->find("diff_ids"); ids != rootfs->end() && ids->is_array()) {
      for (const auto& id : *ids) {
        if (!id.is_string()) return Err(Code::kInvalidArgument, "rootfs.diff_ids: not a string");
        out.diff_ids.push_back(id.get<std::string>());
        if (Status s = content::ValidateDigest(out.diff_ids.back()); !s.ok()) {
          return std::unexpected(s.Wrap("rootfs.diff_ids"));
        }
      }
    }
  }
  if (out.diff_ids.size() != out.layers.size()) {
    return Err(Code::kInvalidArgument, "mismatched image rootfs and manifest layers: " +
                                           std::to_string(out.diff_ids.size()) + " diff_ids for " +
                                           std::to_string(out.layers.size()) + " layers");
  }
  out.chain_ids = ChainIds(out.diff_ids);
  return out;
}

Result<json> ReadImageConfig(const Client& client, const ImageRootFs& rootfs) {
  return ReadJson(client, rootfs.config, "image config");
}

Status Unpack(const Client& client, const ImageRootFs& rootfs, const std::string& snapshotter,
              const std::string& lease, const UnpackProgress& progress) {
  auto snaps = sapi::Snapshots::NewStub(client.channel());
  auto diff = dapi::Diff::NewStub(client.channel());
  for (size_t i = 0; i < rootfs.layers.size(); ++i) {
    const std::string& chain = rootfs.chain_ids[i];
    const std::string parent = i == 0 ? "" : rootfs.chain_ids[i - 1];
    sapi::StatSnapshotRequest st;
    st.set_snapshotter(snapshotter);
    st.set_key(chain);
    sapi::StatSnapshotResponse st_resp;
    Status s = FromGrpc(snaps->Stat(client.NewContext(lease).get(), st, &st_resp));
    if (s.ok()) {
      if (progress) progress(i, false);
      continue;
    }
    if (s.code() != Code::kNotFound) return s.Wrap("stat snapshot " + chain);

    // A fresh extraction key; another unpacker may hold the one we picked.
    std::string key;
    sapi::PrepareSnapshotResponse prepared;
    for (int attempt = 0;; ++attempt) {
      key = "extract-" + UniquePart() + " " + chain;
      sapi::PrepareSnapshotRequest req;
      req.set_snapshotter(snapshotter);
      req.set_key(key);
      req.set_parent(parent);
      s = FromGrpc(snaps->Prepare(client.NewContext(lease).get(), req, &prepared));
      if (s.ok()) break;
      if (s.code() != Code::kAlreadyExists || attempt >= 3) {
        return s.Wrap("failed to prepare extraction snapshot " + Quote(key));
      }
    }
    auto remove_key = [&] {
      sapi::RemoveSnapshotRequest rm;
      rm.set_snapshotter(snapshotter);
      rm.set_key(key);
      google::protobuf::Empty e;
      (void)snaps->Remove(client.NewContext(lease).get(), rm, &e);
    };

    dapi::ApplyRequest apply;
    *apply.mutable_diff() = rootfs.layers[i];
    *apply.mutable_mounts() = prepared.mounts();
    dapi::ApplyResponse applied;
    s = FromGrpc(diff->Apply(client.NewContext(lease).get(), apply, &applied));
    if (!s.ok()) {
      remove_key();
      return s.Wrap("failed to extract layer " + rootfs.diff_ids[i]);
    }
    if (applied.applied().digest() != rootfs.diff_ids[i]) {
      remove_key();
      return Status(Code::kDataLoss, "layer " + rootfs.layers[i].digest() + " unpacks to " +
                                         applied.applied().digest() + ", the config says " +
                                         rootfs.diff_ids[i]);
    }
    sapi::CommitSnapshotRequest commit;
    commit.set_snapshotter(snapshotter);
    commit.set_name(chain);
    commit.set_key(key);
    google::protobuf::Empty empty;
    s = FromGrpc(snaps->Commit(client.NewContext(lease).get(), commit, &empty));
    bool raced = s.code() == Code::kAlreadyExists;  // someone else unpacked it meanwhile
    if (!s.ok()) {
      remove_key();
      if (!raced) return s.Wrap("failed to commit snapshot " + Quote(key));
    } else {
      // The uncompressed digest is known for sure now that Apply verified it.
      RETURN_IF_ERROR(SetContentLabel(client, lease, rootfs.layers[i].digest(), kUncompressedLabel,
                                      rootfs.diff_ids[i]));
    }
    if (progress) progress(i, !raced);
  }
  if (rootfs.layers.empty()) return Status::Ok();
  // The image (through its config) holds its snapshots from now on.
  return SetContentLabel(client, lease, rootfs.config.digest(), kSnapshotRefLabel + snapshotter,
                         rootfs.chain_id());
}

}  // namespace berth::client
