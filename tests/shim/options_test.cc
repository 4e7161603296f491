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

// issue 12 #12: runtime v1's containerd.linux.runc.RuncOptions (the container's) and
// CreateOptions (a task's), encoded by hand as containerd's runctypes would; each changes only
// its own fields of the base.
TEST(OptionsTest, Issue12RuntimeV1Options) {
  std::string ro;
  auto str = [&](char tag, const std::string& v) {
    ro += tag;
    ro += char(v.size());
    ro += v;
  };
  str(0x0a, "crun");            // runtime
  str(0x12, "/run/v1-root");    // runtime_root
  str(0x1a, "/usr/bin/criu");   // criu_path (ignored)
  ro += "\x20\x01";             // systemd_cgroup
  google::protobuf::Any any;
  any.set_type_url("containerd.linux.runc.RuncOptions");
  any.set_value(ro);
  RuncOptions base;
  base.io_uid = 7;
  auto o = DecodeOptions(any, base);
  ASSERT_TRUE(o.has_value()) << o.error().ToString();
  EXPECT_EQ(o->binary_name, "crun");
  EXPECT_EQ(o->root, "/run/v1-root");
  EXPECT_TRUE(o->systemd_cgroup);
  EXPECT_EQ(o->io_uid, 7u);

  std::string co = "\x08\x01";  // no_pivot_root
  co += "\x40\x01";             // no_new_keyring
  co += char(0x4a);
  co += char(4);
  co += "/shm";                  // shim_cgroup
  co += "\x50\xe8\x07";         // io_uid 1000
  co += "\x58\xe9\x07";         // io_gid 1001
  any.set_type_url("containerd.linux.runc.CreateOptions");
  any.set_value(co);
  auto c = DecodeOptions(any, *o);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->binary_name, "crun");  // kept from the RuncOptions
  EXPECT_TRUE(c->no_pivot_root);
  EXPECT_TRUE(c->no_new_keyring);
  EXPECT_EQ(c->shim_cgroup, "/shm");
  EXPECT_EQ(c->io_uid, 1000u);
  EXPECT_EQ(c->io_gid, 1001u);

  any.set_value(std::string("\x0a\x09") + "ab");  // truncated string
  EXPECT_FALSE(DecodeOptions(any).has_value());
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
