#include "shim/options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace berth::shim {
namespace {

google::protobuf::Any RuncAny(const containerd::runc::v1::Options& o) {
  google::protobuf::Any any;
  any.set_type_url("containerd.runc.v1.Options");
  o.SerializeToString(any.mutable_value());
  return any;
}

// runtimeoptions.v1.Options{type_url = 1, config_path = 2}, encoded by hand.
google::protobuf::Any RuntimeOptionsAny(const std::string& config_path) {
  std::string v;
  v += char(0x12);
  v += char(config_path.size());
  v += config_path;
  google::protobuf::Any any;
  any.set_type_url("types.containerd.io/runtimeoptions.v1.Options");
  any.set_value(v);
  return any;
}

TEST(OptionsTest, EmptyAnyIsDefaults) {
  auto o = DecodeOptions(google::protobuf::Any());
  ASSERT_TRUE(o.has_value()) << o.error().ToString();
  EXPECT_EQ(o->binary_name, "");
  EXPECT_EQ(o->root, "");
  EXPECT_FALSE(o->systemd_cgroup);
}

TEST(OptionsTest, RuncOptionsAllFields) {
  containerd::runc::v1::Options p;
  p.set_binary_name("crun");
  p.set_root("/x/root");
  p.set_systemd_cgroup(true);
  p.set_no_pivot_root(true);
  p.set_no_new_keyring(true);
  p.set_io_uid(1000);
  p.set_io_gid(1001);
  p.set_shim_cgroup("/shims");
  p.set_criu_path("/ignored");
  auto any = RuncAny(p);
  for (std::string prefix : {"", "/", "types.googleapis.com/", "types.containerd.io/"}) {
    any.set_type_url(prefix + "containerd.runc.v1.Options");
    auto o = DecodeOptions(any);
    ASSERT_TRUE(o.has_value()) << o.error().ToString();
    EXPECT_EQ(o->binary_name, "crun");
    EXPECT_EQ(o->root, "/x/root");
    EXPECT_TRUE(o->systemd_cgroup);
    EXPECT_TRUE(o->no_pivot_root);
    EXPECT_TRUE(o->no_new_keyring);
    EXPECT_EQ(o->io_uid, 1000u);
    EXPECT_EQ(o->io_gid, 1001u);
    EXPECT_EQ(o->shim_cgroup, "/shims");
  }
}

TEST(OptionsTest, BadInput) {
  google::protobuf::Any any;
  any.set_type_url("containerd.runc.v1.Options");
  any.set_value("\xff\xff\xff");
  EXPECT_EQ(DecodeOptions(any).error().code(), Code::kInvalidArgument);
  any.set_type_url("io.example.Other");
  any.set_value("");
  EXPECT_EQ(DecodeOptions(any).error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(OptionsFromJson("[1,2]").has_value());
  EXPECT_FALSE(OptionsFromJson("{not json").has_value());
  EXPECT_FALSE(OptionsFromJson(R"({"binary_name": 3})").has_value());
  EXPECT_EQ(DecodeOptions(RuntimeOptionsAny("/nonexistent/berth.json")).error().code(),
            Code::kNotFound);
}

TEST(OptionsTest, RuntimeOptionsConfigPath) {
  char tmpl[] = "/tmp/berth-shim-opt-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(tmpl) << R"({"binary_name":"crun","root":"/r","io_uid":7,"unknown":1})";
  auto o = DecodeOptions(RuntimeOptionsAny(tmpl));
  ::unlink(tmpl);
  ASSERT_TRUE(o.has_value()) << o.error().ToString();
  EXPECT_EQ(o->binary_name, "crun");
  EXPECT_EQ(o->root, "/r");
  EXPECT_EQ(o->io_uid, 7u);
  // No config_path: defaults.
  auto d = DecodeOptions(RuntimeOptionsAny(""));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->binary_name, "");
}

TEST(OptionsTest, JsonRoundTrip) {
  RuncOptions o;
  EXPECT_EQ(OptionsToJson(o), "{}");
  o.binary_name = "crun";
  o.root = "/root";
  o.systemd_cgroup = true;
  o.no_pivot_root = true;
  o.no_new_keyring = true;
  o.io_uid = 5;
  o.io_gid = 6;
  o.shim_cgroup = "/sc";
  auto back = OptionsFromJson(OptionsToJson(o));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->binary_name, o.binary_name);
  EXPECT_EQ(back->root, o.root);
  EXPECT_EQ(back->systemd_cgroup, o.systemd_cgroup);
  EXPECT_EQ(back->no_pivot_root, o.no_pivot_root);
  EXPECT_EQ(back->no_new_keyring, o.no_new_keyring);
  EXPECT_EQ(back->io_uid, o.io_uid);
  EXPECT_EQ(back->io_gid, o.io_gid);
  EXPECT_EQ(back->shim_cgroup, o.shim_cgroup);
}

}  // namespace
}  // namespace berth::shim
