#include "client/introspection.h"

#include <google/protobuf/empty.pb.h>

#include "github.com/containerd/containerd/api/services/introspection/v1/introspection.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.grpc.pb.h"

namespace berth::client {
namespace {

namespace ispec = containerd::services::introspection::v1;
namespace vspec = containerd::services::version::v1;

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Result<ServerVersion> GetServerVersion(const Client& client) {
  ServerVersion out;
  vspec::VersionResponse v;
  auto vs = vspec::Version::NewStub(client.channel());
  RETURN_IF_ERROR(FromGrpc(vs->Version(client.NewContext().get(), {}, &v)));
  out.version = v.version();
  out.revision = v.revision();
  ispec::ServerResponse s;
  auto is = ispec::Introspection::NewStub(client.channel());
  RETURN_IF_ERROR(FromGrpc(is->Server(client.NewContext().get(), {}, &s)));
  out.uuid = s.uuid();
  return out;
}

Result<std::vector<PluginInfo>> ListPlugins(const Client& client,
                                            const std::vector<std::string>& filters) {
  ispec::PluginsRequest req;
  for (const auto& f : filters) req.add_filters(f);
  ispec::PluginsResponse resp;
  auto is = ispec::Introspection::NewStub(client.channel());
  RETURN_IF_ERROR(FromGrpc(is->Plugins(client.NewContext().get(), req, &resp)));
  std::vector<PluginInfo> out;
  for (const auto& p : resp.plugins()) {
    PluginInfo info;
    info.type = p.type();
    info.id = p.id();
    info.requires_types.assign(p.requires_().begin(), p.requires_().end());
    for (const auto& pl : p.platforms()) {
      info.platforms.push_back(pl.os() + "/" + pl.architecture() +
                               (pl.variant().empty() ? "" : "/" + pl.variant()));
    }
    info.exports.insert(p.exports().begin(), p.exports().end());
    info.capabilities.assign(p.capabilities().begin(), p.capabilities().end());
    if (p.has_init_err()) {
      info.init_error = p.init_err().message().empty() ? "error" : p.init_err().message();
    }
    out.push_back(std::move(info));
  }
  return out;
}

DaemonDirs DirsFromPlugins(const std::vector<PluginInfo>& plugins) {
  DaemonDirs dirs;
  for (const auto& p : plugins) {
    if (p.type == "io.containerd.content.v1" && p.exports.contains("root")) {
      dirs.root = Parent(p.exports.at("root"));
    }
    if (p.type.starts_with("io.containerd.runtime.") && p.exports.contains("state")) {
      dirs.state = Parent(p.exports.at("state"));
    }
  }
  return dirs;
}

}  // namespace berth::client
