// Image USER → uid/gid. The regression tests for containerd CVE-2024-40635 (and its sequel in
// reliability-anchors T20): a USER that is a number too big for a uid — 4294967296,
// 99999999999, 2147483648 — or a negative one was looked up as a *name* in the image's own
// /etc/passwd, where a crafted line "4294967296:x:0:0:..." made the container run as root. An
// all-digit user or group is a number, never a name; out of range is InvalidArgument.
#include "client/user.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "client/spec.h"

namespace berth::client {
namespace {

using nlohmann::json;

// An image root filesystem whose /etc/passwd and /etc/group map every out-of-range number
// (and "-1") to root.
class CraftedRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-client-user-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/etc");
    std::ofstream(root_ + "/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n"
                                            "4294967296:x:0:0:evil:/:/bin/sh\n"
                                            "99999999999:x:0:0:evil:/:/bin/sh\n"
                                            "2147483648:x:0:0:evil:/:/bin/sh\n"
                                            "-1:x:0:0:evil:/:/bin/sh\n"
                                            "app:x:1234:2345::/home/app:/bin/sh\n";
    std::ofstream(root_ + "/etc/group") << "root:x:0:\n"
                                           "4294967296:x:0:\n"
                                           "staff:x:50:app\n";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // The spec `berth run` builds for an image with USER `user` on this root.
  Result<json> SpecFor(const std::string& user) {
    SpecOptions o;
    o.id = "c";
    o.ns = "default";
    o.rootfs_path = root_;
    o.image_config = {{"Cmd", {"/bin/sh"}}, {"User", user}};
    o.resolve_user = [root = root_](const std::string& u) { return ResolveUserInRoot(root, u); };
    return GenerateSpec(o);
  }

  std::string root_;
};

// CVE-2024-40635: none of these may become a name lookup (which the passwd above maps to 0).
TEST_F(CraftedRoot, OutOfRangeNumericUserIsInvalidArgumentNeverRoot) {
  for (const char* user : {"4294967296", "99999999999", "2147483648", "-1", "4294967296:0",
                           "99999999999:0", "0:4294967296", "app:4294967296",
                           "18446744073709551616", "+4294967296"}) {
    SCOPED_TRACE(user);
    auto spec = SpecFor(user);
    ASSERT_FALSE(spec.has_value()) << "became " << (*spec)["process"]["user"].dump();
    EXPECT_EQ(spec.error().code(), Code::kInvalidArgument) << spec.error().ToString();
    EXPECT_NE(spec.error().message().find("out of range"), std::string::npos)
        << spec.error().ToString();

    // The resolver alone says the same (the CRI spec builder will call it directly).
    auto ids = ResolveUserInRoot(root_, user);
    ASSERT_FALSE(ids.has_value()) << ids->first << ":" << ids->second;
    EXPECT_EQ(ids.error().code(), Code::kInvalidArgument);
  }
}

// Without a root filesystem (no resolver) the same numbers are refused too.
TEST(ImageUser, OutOfRangeWithoutResolverIsInvalidArgument) {
  for (const char* user : {"4294967296", "4294967296:0", "1:99999999999"}) {
    SCOPED_TRACE(user);
    SpecOptions o;
    o.id = "c";
    o.ns = "default";
    o.image_config = {{"Cmd", {"/bin/sh"}}, {"User", user}};
    auto spec = GenerateSpec(o);
    ASSERT_FALSE(spec.has_value());
    EXPECT_EQ(spec.error().code(), Code::kInvalidArgument);
  }
}

TEST_F(CraftedRoot, InRangeUsersResolve) {
  struct Case {
    const char* user;
    uint32_t uid, gid;
  } cases[] = {
      {"2147483647", 2147483647, 0},  // the largest allowed; no passwd entry: gid 0
      {"0", 0, 0},
      {"1234", 1234, 2345},  // a uid takes its primary group from passwd
      {"app", 1234, 2345},
      {"app:staff", 1234, 50},
      {"app:7", 1234, 7},
      {"1234:staff", 1234, 50},
      {"5:6", 5, 6},
      {"007", 7, 0},  // leading zeros are still a number
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.user);
    auto spec = SpecFor(c.user);
    ASSERT_TRUE(spec.has_value()) << spec.error().ToString();
    EXPECT_EQ((*spec)["process"]["user"], json({{"uid", c.uid}, {"gid", c.gid}}));
  }
}

TEST_F(CraftedRoot, UnknownNamesAreNotFound) {
  for (const char* user : {"ghost", "app:nogroup"}) {
    SCOPED_TRACE(user);
    auto ids = ResolveUserInRoot(root_, user);
    ASSERT_FALSE(ids.has_value());
    EXPECT_EQ(ids.error().code(), Code::kNotFound);
  }
}

TEST(ParseNumericId, NumbersNamesAndRange) {
  auto id = [](std::string_view s) { return ParseNumericId(s, "user"); };
  EXPECT_EQ(id("0").value(), std::optional<uint32_t>(0));
  EXPECT_EQ(id("2147483647").value(), std::optional<uint32_t>(kMaxId));
  EXPECT_EQ(id("app").value(), std::nullopt);
  EXPECT_EQ(id("1a").value(), std::nullopt);
  EXPECT_EQ(id("").value(), std::nullopt);
  for (const char* bad : {"2147483648", "4294967295", "4294967296", "99999999999", "-1", "-0"}) {
    SCOPED_TRACE(bad);
    ASSERT_FALSE(id(bad).has_value());
    EXPECT_EQ(id(bad).error().code(), Code::kInvalidArgument);
  }
}

TEST(ParseUser, Shapes) {
  EXPECT_FALSE(ParseUser("a:b:c").has_value());
  EXPECT_FALSE(ParseUser(":0").has_value());
  auto ref = ParseUser("app:10");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->user, "app");
  EXPECT_FALSE(ref->uid.has_value());
  EXPECT_EQ(ref->gid, std::optional<uint32_t>(10));
  EXPECT_EQ(NumericUserIds("3:4").value(), std::optional<UserIds>(UserIds{3, 4}));
  EXPECT_EQ(NumericUserIds("3").value(), std::nullopt);  // its group comes from passwd
}

}  // namespace
}  // namespace berth::client
