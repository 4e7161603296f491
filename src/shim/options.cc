#include "shim/options.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace berth::shim {

namespace {

// runtimeoptions.v1.Options {1 type_url, 2 config_path}: two strings, decoded by hand.
Result<std::string> ConfigPathOf(const std::string& value) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(value.data()),
                                            static_cast<int>(value.size()));
  std::string path;
  while (uint32_t tag = in.ReadTag()) {
    using WFL = google::protobuf::internal::WireFormatLite;
    if (WFL::GetTagFieldNumber(tag) == 2 &&
        WFL::GetTagWireType(tag) == WFL::WIRETYPE_LENGTH_DELIMITED) {
      if (!WFL::ReadString(&in, &path)) break;
    } else if (!WFL::SkipField(&in, tag)) {
      return std::unexpected(InvalidArgument("invalid runtimeoptions.v1.Options"));
    }
  }
  return path;
}

// Runtime v1's messages (runtime/linux/runctypes/runc.proto), decoded by hand into `o`: only
// the fields the runc shim of v1 honoured and we run with. `strings` and `bools` map field
// numbers to members; uint32 fields go through `uints`.
Status DecodeFields(const std::string& value, const char* what,
                    std::initializer_list<std::pair<int, std::string*>> strings,
                    std::initializer_list<std::pair<int, bool*>> bools,
                    std::initializer_list<std::pair<int, uint32_t*>> uints) {
  using WFL = google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(value.data()),
                                            static_cast<int>(value.size()));
  while (uint32_t tag = in.ReadTag()) {
    int field = WFL::GetTagFieldNumber(tag);
    auto type = WFL::GetTagWireType(tag);
    bool done = false;
    for (auto [n, dst] : strings) {
      if (n == field && type == WFL::WIRETYPE_LENGTH_DELIMITED) {
        if (!WFL::ReadString(&in, dst)) return InvalidArgument(std::string("invalid ") + what);
        done = true;
      }
    }
    for (auto [n, dst] : bools) {
      if (n == field && type == WFL::WIRETYPE_VARINT) {
        uint64_t v;
        if (!in.ReadVarint64(&v)) return InvalidArgument(std::string("invalid ") + what);
        *dst = v != 0;
        done = true;
      }
    }
    for (auto [n, dst] : uints) {
      if (n == field && type == WFL::WIRETYPE_VARINT) {
        uint32_t v;
        if (!in.ReadVarint32(&v)) return InvalidArgument(std::string("invalid ") + what);
        *dst = v;
        done = true;
      }
    }
    if (!done && !WFL::SkipField(&in, tag)) return InvalidArgument(std::string("invalid ") + what);
  }
  return Status::Ok();
}

}  // namespace

Result<RuncOptions> DecodeOptions(const google::protobuf::Any& any, const RuncOptions& base) {
  RuncOptions o;
  const std::string& url = any.type_url();
  if (url.empty() && any.value().empty()) return o;
  auto name = url.substr(url.rfind('/') == std::string::npos ? 0 : url.rfind('/') + 1);
  if (name == "containerd.linux.runc.RuncOptions") {
    // Runtime v1 (io.containerd.runtime.v1.linux): the container's runtime options.
    o = base;
    std::string criu_path;
    RETURN_IF_ERROR(DecodeFields(any.value(), name.c_str(),
                                 {{1, &o.binary_name}, {2, &o.root}, {3, &criu_path}},
                                 {{4, &o.systemd_cgroup}}, {}));
    return o;
  }
  if (name == "containerd.linux.runc.CreateOptions") {
    // Runtime v1: a task's create options, on top of the container's RuncOptions (`base`).
    o = base;
    RETURN_IF_ERROR(DecodeFields(any.value(), name.c_str(), {{9, &o.shim_cgroup}},
                                 {{1, &o.no_pivot_root}, {8, &o.no_new_keyring}},
                                 {{10, &o.io_uid}, {11, &o.io_gid}}));
    return o;
  }
  if (name == "containerd.runc.v1.Options") {
    containerd::runc::v1::Options p;
    if (!p.ParseFromString(any.value())) {
      return std::unexpected(InvalidArgument("invalid containerd.runc.v1.Options"));
    }
    o.binary_name = p.binary_name();
    o.root = p.root();
    o.systemd_cgroup = p.systemd_cgroup();
    o.no_pivot_root = p.no_pivot_root();
    o.no_new_keyring = p.no_new_keyring();
    o.io_uid = p.io_uid();
    o.io_gid = p.io_gid();
    o.shim_cgroup = p.shim_cgroup();
    return o;
  }
  if (name == "runtimeoptions.v1.Options") {
    ASSIGN_OR_RETURN(std::string path, ConfigPathOf(any.value()));
    if (path.empty()) return o;
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    return OptionsFromJson(text);
  }
  return std::unexpected(InvalidArgument("unsupported runtime options type " + url));
}

std::string OptionsToJson(const RuncOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  if (!o.binary_name.empty()) j["binary_name"] = o.binary_name;
  if (!o.root.empty()) j["root"] = o.root;
  if (o.systemd_cgroup) j["systemd_cgroup"] = true;
  if (o.no_pivot_root) j["no_pivot_root"] = true;
  if (o.no_new_keyring) j["no_new_keyring"] = true;
  if (o.io_uid) j["io_uid"] = o.io_uid;
  if (o.io_gid) j["io_gid"] = o.io_gid;
  if (!o.shim_cgroup.empty()) j["shim_cgroup"] = o.shim_cgroup;
  return j.dump();
}

Result<RuncOptions> OptionsFromJson(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return std::unexpected(InvalidArgument("runtime options: not a JSON object"));
  }
  RuncOptions o;
  try {
    o.binary_name = j.value("binary_name", std::string());
    o.root = j.value("root", std::string());
    o.systemd_cgroup = j.value("systemd_cgroup", false);
    o.no_pivot_root = j.value("no_pivot_root", false);
    o.no_new_keyring = j.value("no_new_keyring", false);
    o.io_uid = j.value("io_uid", 0u);
    o.io_gid = j.value("io_gid", 0u);
    o.shim_cgroup = j.value("shim_cgroup", std::string());
  } catch (const std::exception& e) {
    return std::unexpected(InvalidArgument(std::string("runtime options: ") + e.what()));
  }
  return o;
}

}  // namespace berth::shim
