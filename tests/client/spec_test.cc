// The OCI spec `berth run`/`create` build, against what containerd 1.6.20's client builds for
// the same `ctr` command. The expected documents in testdata/ are `ctr containers info` of
// containers the real ctr created on a real containerd 1.6.20 (root path replaced by /ROOTFS):
//   ctr containers create --rootfs DIR spec1 /bin/true
//   ctr containers create --tty --env FOO=bar --cwd /w --rootfs DIR spec2 /bin/echo hi
#include "client/spec.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace berth::client {
namespace {

using nlohmann::json;

json Load(const std::string& name) {
  std::ifstream in(std::string(BERTH_CLIENT_TESTDATA) + "/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

// Our one deliberate difference from containerd's default: a read-only /sys/fs/cgroup mount
// (as Docker and the CRI add; containerd's plain default has none). Removes it from `spec`,
// checking it is there exactly once, just after /sys.
void RemoveCgroupMount(json& spec) {
  json& mounts = spec["mounts"];
  int found = 0;
  for (size_t i = 0; i < mounts.size(); ++i) {
    if (mounts[i]["destination"] != "/sys/fs/cgroup") continue;
    ++found;
    ASSERT_GT(i, 0u);
    EXPECT_EQ(mounts[i - 1]["destination"], "/sys");
    EXPECT_EQ(mounts[i],
              json({{"destination", "/sys/fs/cgroup"},
                    {"type", "cgroup"},
                    {"source", "cgroup"},
                    {"options", {"nosuid", "noexec", "nodev", "relatime", "ro"}}}));
    mounts.erase(i);
    break;
  }
  EXPECT_EQ(found, 1);
}

TEST(DefaultSpec, MatchesContainerd16) {
  SpecOptions o;
  o.id = "spec1";
  o.ns = "default";
  o.rootfs_path = "/ROOTFS";
  o.args = {"/bin/true"};
  auto spec = GenerateSpec(o);
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  RemoveCgroupMount(*spec);
  json want = Load("containerd-1.6.20-default-spec.json");
  EXPECT_EQ(*spec, want) << "ours:\n" << spec->dump(1) << "\ncontainerd:\n" << want.dump(1);
}

TEST(DefaultSpec, TtyEnvCwdMatchContainerd16) {
  SpecOptions o;
  o.id = "spec2";
  o.ns = "default";
  o.rootfs_path = "/ROOTFS";
  o.args = {"/bin/echo", "hi"};
  o.tty = true;
  o.env = {"FOO=bar"};
  o.cwd = "/w";
  auto spec = GenerateSpec(o);
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  RemoveCgroupMount(*spec);
  json want = Load("containerd-1.6.20-tty-env-cwd-spec.json");
  EXPECT_EQ(*spec, want) << "ours:\n" << spec->dump(1) << "\ncontainerd:\n" << want.dump(1);
}

TEST(DefaultSpec, SnapshotRootfsIsRelative) {
  SpecOptions o;
  o.id = "c";
  o.ns = "ns1";
  o.args = {"/bin/true"};
  auto spec = GenerateSpec(o);
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ((*spec)["root"], json({{"path", "rootfs"}}));
  EXPECT_EQ((*spec)["linux"]["cgroupsPath"], "/ns1/c");
}

TEST(DefaultSpec, ImageConfigSuppliesProcess) {
  SpecOptions o;
  o.id = "c";
  o.ns = "default";
  o.image_config = {{"Env", {"PATH=/bin", "A=1"}},
                    {"Entrypoint", {"/entry"}},
                    {"Cmd", {"arg"}},
                    {"WorkingDir", "/srv"},
                    {"User", "1000:1001"}};
  o.env = {"A=2", "B=3"};
  auto spec = GenerateSpec(o);
  ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
  const json& p = (*spec)["process"];
  EXPECT_EQ(p["args"], json({"/entry", "arg"}));
  EXPECT_EQ(p["env"], json({"PATH=/bin", "A=2", "B=3"}));
  EXPECT_EQ(p["cwd"], "/srv");
  EXPECT_EQ(p["user"], json({{"uid", 1000}, {"gid", 1001}}));
}

TEST(DefaultSpec, ImageWithoutEnvGetsDefaultPath) {
  SpecOptions o;
  o.id = "c";
  o.ns = "default";
  o.image_config = {{"Cmd", {"sh"}}};
  auto spec = GenerateSpec(o);
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ((*spec)["process"]["env"], json({kDefaultPathEnv}));
}

TEST(DefaultSpec, NoArgsIsInvalidArgument) {
  SpecOptions o;
  o.id = "c";
  o.ns = "default";
  o.image_config = json::object();
  auto spec = GenerateSpec(o);
  ASSERT_FALSE(spec.has_value());
  EXPECT_EQ(spec.error().code(), Code::kInvalidArgument);
}

TEST(MergeEnv, ReplacesAppendsAndRemoves) {
  EXPECT_EQ(MergeEnv({"A=1", "B=2", "C=3"}, {"B=20", "D=4", "C"}),
            (std::vector<std::string>{"A=1", "B=20", "D=4"}));
}

TEST(ParseMountFlag, CtrSyntax) {
  auto m = ParseMountFlag("type=bind,src=/a,dst=/b,options=rbind:ro");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m, json({{"type", "bind"},
                      {"source", "/a"},
                      {"destination", "/b"},
                      {"options", {"rbind", "ro"}}}));
  EXPECT_FALSE(ParseMountFlag("type=bind,src=/a").has_value());
  EXPECT_FALSE(ParseMountFlag("bogus").has_value());
}

}  // namespace
}  // namespace berth::client
