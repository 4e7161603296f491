// berth images: ls, rm, label, tag — the Images service (names → target descriptors);
// mount and unmount live in images_mount_cmd.cc.
#include <google/protobuf/empty.pb.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"

namespace berth::cli {
namespace {

namespace iapi = containerd::services::images::v1;

Result<std::unique_ptr<iapi::Images::Stub>> Stub(Cli& cli) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  return iapi::Images::NewStub(client->channel());
}

// The kind of thing a media type names, for the TYPE column; unknown types print in full.
std::string ShortMediaType(const std::string& mt) {
  static const std::pair<const char*, const char*> kKnown[] = {
      {"application/vnd.oci.image.index.v1+json", "index"},
      {"application/vnd.docker.distribution.manifest.list.v2+json", "index (docker)"},
      {"application/vnd.oci.image.manifest.v1+json", "manifest"},
      {"application/vnd.docker.distribution.manifest.v2+json", "manifest (docker)"},
      {"application/vnd.docker.distribution.manifest.v1+prettyjws", "manifest (schema1)"},
      {"application/vnd.docker.distribution.manifest.v1+json", "manifest (schema1)"},
      {"application/vnd.oci.image.config.v1+json", "config"},
      {"application/vnd.docker.container.image.v1+json", "config (docker)"},
      {"application/vnd.oci.image.layer.v1.tar", "layer"},
      {"application/vnd.oci.image.layer.v1.tar+gzip", "layer (gzip)"},
      {"application/vnd.oci.image.layer.v1.tar+zstd", "layer (zstd)"},
      {"application/vnd.docker.image.rootfs.diff.tar.gzip", "layer (docker)"},
  };
  for (const auto& [full, short_name] : kKnown) {
    if (mt == full) return short_name;
  }
  return mt.empty() ? "-" : mt;
}

nlohmann::json ImageJson(const iapi::Image& img) {
  const auto& t = img.target();
  return {{"name", img.name()},
          {"target",
           {{"media_type", t.media_type()},
            {"digest", t.digest()},
            {"size", t.size()},
            {"annotations", ToLabels(t.annotations())}}},
          {"labels", ToLabels(img.labels())},
          {"created_at", TimestampJson(img.created_at())},
          {"updated_at", TimestampJson(img.updated_at())}};
}

void PrintImages(const Cli& cli, const std::vector<iapi::Image>& images, bool quiet) {
  if (cli.format() == Format::kJson) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& i : images) arr.push_back(quiet ? nlohmann::json(i.name()) : ImageJson(i));
    PrintJson(arr, std::cout);
    return;
  }
  if (quiet) {
    for (const auto& i : images) std::cout << i.name() << '\n';
    return;
  }
  Table table({"REF", "TYPE", "DIGEST", "SIZE", "LABELS"});
  for (const auto& i : images) {
    Labels labels = ToLabels(i.labels());
    table.AddRow({i.name(), ShortMediaType(i.target().media_type()), i.target().digest(),
                  HumanSize(i.target().size()), labels.empty() ? "-" : JoinLabels(labels)});
  }
  table.Print(std::cout);
}

int RunList(Cli& cli, const std::vector<std::string>& filters, bool quiet) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  iapi::ListImagesRequest req;
  for (const auto& f : filters) req.add_filters(f);
  iapi::ListImagesResponse resp;
  auto ctx = (*cli.client())->NewContext();
  if (Status s = FromGrpc((*stub)->List(ctx.get(), req, &resp)); !s.ok()) return ReportError(s);
  std::vector<iapi::Image> images(resp.images().begin(), resp.images().end());
  std::ranges::sort(images, {}, &iapi::Image::name);
  PrintImages(cli, images, quiet);
  return 0;
}

int RunRemove(Cli& cli, const std::vector<std::string>& names, bool sync) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  Client* client = *cli.client();
  return RemoveEach(cli, names, [&](const std::string& name, size_t i) {
    iapi::DeleteImageRequest req;
    req.set_name(name);
    // One synchronous collection at the end covers every image removed before it (as ctr).
    req.set_sync(sync && i + 1 == names.size());
    google::protobuf::Empty resp;
    return FromGrpc((*stub)->Delete(client->NewContext().get(), req, &resp));
  });
}

Result<iapi::Image> GetImage(Cli& cli, iapi::Images::Stub& stub, const std::string& name) {
  ASSIGN_OR_RETURN(Client * client, cli.client());
  iapi::GetImageRequest req;
  req.set_name(name);
  iapi::GetImageResponse resp;
  RETURN_IF_ERROR(FromGrpc(stub.Get(client->NewContext().get(), req, &resp)));
  return resp.image();
}

int RunLabel(Cli& cli, const std::string& name, const std::vector<std::string>& label_args) {
  auto labels = ParseLabelArgs(label_args);
  if (!labels) return ReportError(labels.error());
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  iapi::Image result;
  if (labels->empty()) {
    auto img = GetImage(cli, **stub, name);
    if (!img) return ReportError(img.error());
    result = std::move(*img);
  } else {
    iapi::UpdateImageRequest req;
    req.mutable_image()->set_name(name);
    for (const auto& [k, v] : *labels) {
      // An empty value is left out of the map: with its path in the mask, that removes it.
      if (!v.empty()) (*req.mutable_image()->mutable_labels())[k] = v;
      req.mutable_update_mask()->add_paths("labels." + k);
    }
    iapi::UpdateImageResponse resp;
    auto ctx = (*cli.client())->NewContext();
    if (Status s = FromGrpc((*stub)->Update(ctx.get(), req, &resp)); !s.ok()) {
      return ReportError(s);
    }
    result = resp.image();
  }
  if (cli.format() == Format::kJson) {
    PrintJson(ImageJson(result), std::cout);
  } else {
    PrintImages(cli, {result}, false);
  }
  return 0;
}

int RunTag(Cli& cli, const std::string& src, const std::vector<std::string>& dsts, bool force) {
  auto stub = Stub(cli);
  if (!stub) return ReportError(stub.error());
  auto img = GetImage(cli, **stub, src);
  if (!img) return ReportError(img.error());
  Client* client = *cli.client();
  nlohmann::json tagged = nlohmann::json::array();
  for (const auto& dst : dsts) {
    iapi::Image copy;
    copy.set_name(dst);
    *copy.mutable_target() = img->target();
    *copy.mutable_labels() = img->labels();
    iapi::CreateImageRequest req;
    *req.mutable_image() = copy;
    iapi::CreateImageResponse resp;
    iapi::Image created;
    Status s = FromGrpc((*stub)->Create(client->NewContext().get(), req, &resp));
    if (s.ok()) {
      created = resp.image();
    } else if (s.code() == Code::kAlreadyExists && force) {
      // No mask: the target and labels are replaced wholesale.
      iapi::UpdateImageRequest up;
      *up.mutable_image() = copy;
      iapi::UpdateImageResponse up_resp;
      if (Status us = FromGrpc((*stub)->Update(client->NewContext().get(), up, &up_resp));
          !us.ok()) {
        return ReportError(us);
      }
      created = up_resp.image();
    } else {
      if (s.code() == Code::kAlreadyExists) {
        s = Status(s.code(), s.message() + "; use --force to retarget " + Quote(dst));
      }
      return ReportError(s);
    }
    if (cli.format() == Format::kJson) {
      tagged.push_back(ImageJson(created));
    } else {
      std::cout << dst << '\n' << std::flush;
    }
  }
  if (cli.format() == Format::kJson) PrintJson(tagged, std::cout);
  return 0;
}

}  // namespace

void AddImagesCommands(CLI::App& app, Cli& cli) {
  auto* group = app.add_subcommand("images", "manage images (names for content)");
  group->alias("image");
  group->alias("i");
  group->require_subcommand(1);

  struct Args {
    bool quiet = false;
    bool sync = false;
    bool force = false;
    std::string name;
    std::vector<std::string> list;
  };
  auto args = std::make_shared<Args>();

  auto* ls = group->add_subcommand(
      "ls", "list images (filters: name==..., target.mediatype==..., labels.k==v)");
  ls->alias("list");
  ls->add_option("filters", args->list, "containerd filters");
  ls->add_flag("-q,--quiet", args->quiet, "print only the names");
  OnParsed(ls, cli, [&cli, args] { return RunList(cli, args->list, args->quiet); });

  auto* rm = group->add_subcommand("rm", "remove images (their content is left to the GC)");
  rm->alias("remove");
  rm->alias("delete");
  rm->add_option("names", args->list, "image names")->required();
  rm->add_flag("--sync", args->sync, "wait for the garbage collection the removal triggers");
  OnParsed(rm, cli, [&cli, args] { return RunRemove(cli, args->list, args->sync); });

  auto* label = group->add_subcommand(
      "label", "set labels on an image (key=value; key= removes) and print it");
  label->add_option("name", args->name, "image name")->required();
  label->add_option("labels", args->list, "labels as key=value");
  OnParsed(label, cli, [&cli, args] { return RunLabel(cli, args->name, args->list); });

  auto* tag = group->add_subcommand("tag", "give an image another name");
  tag->add_option("source", args->name, "existing image name")->required();
  tag->add_option("targets", args->list, "new names")->required();
  tag->add_flag("-f,--force", args->force, "retarget a name that exists already");
  OnParsed(tag, cli, [&cli, args] { return RunTag(cli, args->name, args->list, args->force); });

  AddImagesMountCommands(*group, cli);
}

}  // namespace berth::cli
