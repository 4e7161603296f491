#include "metadata/image_store.h"

#include <nlohmann/json.hpp>

#include "common/digest.h"
#include "common/filters.h"
#include "metadata/namespaces.h"
#include "metadata/object_labels.h"

namespace berth::metadata {
namespace {

Status ImageNotFound(const std::string& name) { return NotFound("image " + Quote(name)); }

void DropEmptyValues(std::map<std::string, std::string>& m) {
  std::erase_if(m, [](const auto& kv) { return kv.second.empty(); });
}

Status ValidateImage(const Image& image) {
  if (image.name.empty()) return InvalidArgument("image name must not be empty");
  if (Status s = ValidateLabels(image.labels); !s.ok()) return s.Wrap("image.Labels");
  const Descriptor& t = image.target;
  if (Status s = ValidateDigest(t.digest); !s.ok()) {
    return InvalidArgument("Target.Digest " + Quote(t.digest) + " invalid: " + s.message());
  }
  if (t.size <= 0) return InvalidArgument("Target.Size must be greater than zero");
  if (t.media_type.empty()) return InvalidArgument("Target.MediaType must be set");
  return Status::Ok();
}

std::string AnnotationsToJson(const std::map<std::string, std::string>& annotations) {
  return nlohmann::json(annotations).dump();
}

Result<std::map<std::string, std::string>> AnnotationsFromJson(const std::string& text,
                                                                const std::string& image) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto corrupt = [&] {
    return std::unexpected(
        Status(Code::kDataLoss, "image " + Quote(image) + ": stored annotations are corrupt"));
  };
  if (!doc.is_object()) return corrupt();
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : doc.items()) {
    if (!v.is_string()) return corrupt();
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

constexpr char kSelectImage[] =
    "SELECT name, media_type, digest, size, annotations, created_at, updated_at FROM images ";

// Reads the current row of a statement built on kSelectImage (labels not included).
Result<Image> ImageFromRow(const Stmt& st) {
  Image img;
  img.name = st.ColumnText(0);
  img.target.media_type = st.ColumnText(1);
  img.target.digest = st.ColumnText(2);
  img.target.size = st.ColumnInt(3);
  ASSIGN_OR_RETURN(img.target.annotations, AnnotationsFromJson(st.ColumnText(4), img.name));
  img.created_at = st.ColumnInt(5);
  img.updated_at = st.ColumnInt(6);
  return img;
}

Result<std::optional<Image>> ReadImage(Tx& tx, const std::string& ns, const std::string& name) {
  ASSIGN_OR_RETURN(Stmt st,
                   tx.Prepare(std::string(kSelectImage) + "WHERE namespace=? AND name=?"));
  st.Bind(1, ns).Bind(2, name);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<Image>();
  ASSIGN_OR_RETURN(Image img, ImageFromRow(st));
  ASSIGN_OR_RETURN(img.labels, ReadObjectLabels(tx, ns, kKindImage, name));
  return std::optional<Image>(std::move(img));
}

// Writes every column but created_at and the labels of an image whose row exists.
Status WriteImage(Tx& tx, const std::string& ns, const Image& img) {
  ASSIGN_OR_RETURN(Stmt st, tx.Prepare("UPDATE images SET media_type=?, digest=?, size=?, "
                                       "annotations=?, updated_at=? WHERE namespace=? AND "
                                       "name=?"));
  st.Bind(1, img.target.media_type)
      .Bind(2, img.target.digest)
      .Bind(3, img.target.size)
      .Bind(4, AnnotationsToJson(img.target.annotations))
      .Bind(5, img.updated_at)
      .Bind(6, ns)
      .Bind(7, img.name);
  RETURN_IF_ERROR(st.Exec());
  return WriteObjectLabels(tx, ns, kKindImage, img.name, img.labels);
}

filters::Adaptor ImageFields(const Image& img) {
  // containerd's adaptImage: extra path components after `name` or `target.<x>` are ignored.
  return [&img](std::span<const std::string> fp) -> std::optional<std::string> {
    if (fp.empty()) return std::nullopt;
    auto non_empty = [](const std::string& v) -> std::optional<std::string> {
      if (v.empty()) return std::nullopt;
      return v;
    };
    if (fp[0] == "name") return non_empty(img.name);
    if (fp[0] == "target") {
      if (fp.size() < 2) return std::nullopt;
      if (fp[1] == "digest") return non_empty(img.target.digest);
      if (fp[1] == "mediatype") return non_empty(img.target.media_type);
      return std::nullopt;
    }
    if (fp[0] == "labels") return filters::LookupMap(img.labels, fp.subspan(1));
    if (fp[0] == "annotations") return filters::LookupMap(img.target.annotations, fp.subspan(1));
    return std::nullopt;
  };
}

}  // namespace

Result<Image> ImageStore::Get(const std::string& ns, const std::string& name) const {
  std::optional<Image> img;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(img, ReadImage(tx, ns, name));
    return Status::Ok();
  }));
  if (!img) return std::unexpected(ImageNotFound(name));
  return std::move(*img);
}

Result<std::vector<Image>> ImageStore::List(const std::string& ns,
                                            std::span<const std::string> exprs) const {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::ParseAll(exprs));
  std::vector<Image> all;
  RETURN_IF_ERROR(db_.View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st,
                     tx.Prepare(std::string(kSelectImage) + "WHERE namespace=? ORDER BY name"));
    st.Bind(1, ns);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      ASSIGN_OR_RETURN(Image img, ImageFromRow(st));
      all.push_back(std::move(img));
    }
    if (all.empty()) return Status::Ok();
    // One pass over the namespace's image labels instead of a query per image.
    std::map<std::string, Labels> labels;
    ASSIGN_OR_RETURN(Stmt ls, tx.Prepare("SELECT object, key, value FROM labels "
                                         "WHERE namespace=? AND kind=?"));
    ls.Bind(1, ns).Bind(2, std::string_view(kKindImage));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, ls.Step());
      if (!row) break;
      labels[ls.ColumnText(0)].emplace(ls.ColumnText(1), ls.ColumnText(2));
    }
    for (Image& img : all) {
      auto it = labels.find(img.name);
      if (it != labels.end()) img.labels = std::move(it->second);
    }
    return Status::Ok();
  }));
  if (filter.MatchesAll()) return all;
  std::vector<Image> out;
  for (Image& img : all) {
    if (filter.Match(ImageFields(img))) out.push_back(std::move(img));
  }
  return out;
}

Result<Image> ImageStore::Create(const std::string& ns, const Image& image) {
  RETURN_IF_ERROR(ValidateImage(image));
  Image img = image;
  DropEmptyValues(img.labels);
  DropEmptyValues(img.target.annotations);
  img.created_at = img.updated_at = NowNanos();
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    RETURN_IF_ERROR(EnsureNamespace(tx, ns));
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("INSERT INTO images(namespace, name, media_type, "
                                         "digest, size, annotations, created_at, updated_at) "
                                         "VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"));
    st.Bind(1, ns)
        .Bind(2, img.name)
        .Bind(3, img.target.media_type)
        .Bind(4, img.target.digest)
        .Bind(5, img.target.size)
        .Bind(6, AnnotationsToJson(img.target.annotations))
        .Bind(7, img.created_at)
        .Bind(8, img.updated_at);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return AlreadyExists("image " + Quote(img.name));
    return WriteObjectLabels(tx, ns, kKindImage, img.name, img.labels);
  }));
  return img;
}

Result<Image> ImageStore::Update(const std::string& ns, const Image& image,
                                 const std::vector<std::string>& paths) {
  if (image.name.empty()) {
    return std::unexpected(InvalidArgument("image name is required for update"));
  }
  Image updated;
  RETURN_IF_ERROR(db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(std::optional<Image> current, ReadImage(tx, ns, image.name));
    if (!current) return ImageNotFound(image.name);
    if (paths.empty()) {
      updated = image;
    } else {
      updated = *current;
      LabelMask mask = ParseLabelMask(paths);
      // A whole-target or whole-annotations replacement first, then single annotation keys,
      // so the result does not depend on the order of the paths.
      std::vector<std::string> annotation_keys;
      bool replace_annotations = false;
      for (const std::string& p : mask.other_paths) {
        if (p == "target") {
          updated.target = image.target;
        } else if (p == "annotations") {
          replace_annotations = true;
        } else if (p.starts_with("annotations.")) {
          annotation_keys.push_back(p.substr(12));
        } else {
          return InvalidArgument("cannot update " + Quote(p) + " field on image " +
                                 Quote(image.name));
        }
      }
      if (replace_annotations) updated.target.annotations = image.target.annotations;
      for (const std::string& k : annotation_keys) {
        auto it = image.target.annotations.find(k);
        if (it == image.target.annotations.end()) {
          updated.target.annotations.erase(k);
        } else {
          updated.target.annotations[k] = it->second;
        }
      }
      if (mask.replace_all || !mask.keys.empty()) {
        auto labels = ApplyLabelMask(current->labels, image.labels, mask);
        if (!labels) return labels.error().Wrap("image.Labels");
        updated.labels = std::move(*labels);
      }
    }
    updated.name = image.name;
    DropEmptyValues(updated.labels);
    DropEmptyValues(updated.target.annotations);
    RETURN_IF_ERROR(ValidateImage(updated));
    updated.created_at = current->created_at;
    updated.updated_at = NowNanos();
    return WriteImage(tx, ns, updated);
  }));
  return updated;
}

Status ImageStore::Delete(const std::string& ns, const std::string& name) {
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("DELETE FROM images WHERE namespace=? AND name=?"));
    st.Bind(1, ns).Bind(2, name);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return ImageNotFound(name);
    return DeleteObjectLabels(tx, ns, kKindImage, name);
  });
}

Status ImageStore::SetRawAnnotationsForTest(const std::string& ns, const std::string& name,
                                            std::string_view json) {
  return db_.Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("UPDATE images SET annotations=? WHERE namespace=? AND "
                                         "name=?"));
    st.Bind(1, json).Bind(2, ns).Bind(3, name);
    RETURN_IF_ERROR(st.Exec());
    if (tx.Changes() == 0) return NotFound("image " + Quote(name));
    return Status::Ok();
  });
}

}  // namespace berth::metadata
