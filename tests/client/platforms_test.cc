// Platform parsing, normalization and matching, against containerd 1.6's platforms package
// (Normalize, and the preference order of platforms.Only).
#include "client/platforms.h"

#include <gtest/gtest.h>

#include "client/image.h"

namespace berth::client {
namespace {

Platform P(const char* os, const char* arch, const char* variant = "") {
  return Platform{os, arch, variant};
}

TEST(Platforms, ParseAndNormalize) {
  struct Case {
    const char* in;
    Platform want;
  } cases[] = {
      {"linux/amd64", P("linux", "amd64")},
      {"amd64", P("linux", "amd64")},
      {"linux/x86_64", P("linux", "amd64")},
      {"linux/x86-64/v1", P("linux", "amd64")},
      {"linux/amd64/v3", P("linux", "amd64", "v3")},
      {"Linux/AMD64", P("linux", "amd64")},
      {"linux/aarch64", P("linux", "arm64")},
      {"linux/arm64/v8", P("linux", "arm64")},
      {"linux/arm64/8", P("linux", "arm64")},
      {"linux/armhf", P("linux", "arm", "v7")},
      {"linux/armel", P("linux", "arm", "v6")},
      {"linux/arm", P("linux", "arm", "v7")},
      {"linux/arm/7", P("linux", "arm", "v7")},
      {"linux/arm/6", P("linux", "arm", "v6")},
      {"linux/i386", P("linux", "386")},
      {"macos/arm64", P("darwin", "arm64")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    auto p = ParsePlatform(c.in);
    ASSERT_TRUE(p.has_value()) << p.error().ToString();
    EXPECT_EQ(*p, c.want) << PlatformString(*p);
  }
  for (const char* bad : {"", "linux/", "/amd64", "a/b/c/d", "linux//v7"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParsePlatform(bad).has_value());
  }
  EXPECT_EQ(PlatformString(P("linux", "arm", "v7")), "linux/arm/v7");
  EXPECT_EQ(PlatformString(P("linux", "amd64")), "linux/amd64");
}

TEST(Platforms, HostIsNormalizedLinux) {
  Platform host = HostPlatform();
  EXPECT_EQ(host.os, "linux");
  EXPECT_EQ(NormalizePlatform(host.os, host.arch, host.variant), host);
}

// containerd's platformVector: the exact platform first, then what else it runs, in order.
TEST(Platforms, RankFollowsContainerdPreference) {
  const Platform amd64 = P("linux", "amd64");
  EXPECT_EQ(PlatformRank(amd64, P("linux", "amd64")), 0);
  EXPECT_EQ(PlatformRank(amd64, P("linux", "386")), 1);
  EXPECT_EQ(PlatformRank(amd64, P("linux", "arm64")), -1);
  EXPECT_EQ(PlatformRank(amd64, P("windows", "amd64")), -1);
  EXPECT_EQ(PlatformRank(amd64, P("linux", "amd64", "v2")), -1);  // needs a newer CPU

  const Platform v3 = P("linux", "amd64", "v3");
  EXPECT_EQ(PlatformRank(v3, P("linux", "amd64", "v3")), 0);
  EXPECT_EQ(PlatformRank(v3, P("linux", "amd64", "v2")), 1);
  EXPECT_EQ(PlatformRank(v3, P("linux", "386")), 3);  // after v2 and v1

  const Platform armv7 = P("linux", "arm", "v7");
  EXPECT_EQ(PlatformRank(armv7, P("linux", "arm", "v7")), 0);
  EXPECT_EQ(PlatformRank(armv7, P("linux", "arm", "v6")), 1);
  EXPECT_EQ(PlatformRank(armv7, P("linux", "arm", "v5")), 2);
  EXPECT_EQ(PlatformRank(armv7, P("linux", "arm", "v8")), -1);
  EXPECT_EQ(PlatformRank(P("linux", "arm", "v5"), P("linux", "arm", "v6")), -1);

  // arm64 also runs 32-bit arm, v8 down to v5.
  const Platform arm64 = P("linux", "arm64");
  EXPECT_EQ(PlatformRank(arm64, P("linux", "arm64")), 0);
  EXPECT_EQ(PlatformRank(arm64, P("linux", "arm", "v8")), 1);
  EXPECT_EQ(PlatformRank(arm64, P("linux", "arm", "v7")), 2);
  EXPECT_EQ(PlatformRank(arm64, P("linux", "arm", "v5")), 4);
  EXPECT_EQ(PlatformRank(arm64, P("linux", "amd64")), -1);
}

// OCI image-spec ChainID: chain[0] = diff[0], chain[i] = sha256(chain[i-1] + " " + diff[i]).
// Expected values computed independently (Python hashlib) for diff IDs sha256("layer-N").
TEST(ChainIds, OciDefinition) {
  const std::vector<std::string> diffs = {
      "sha256:ff5eba71a8188ea1e1d463b58f6ad20fb3736ae6e2fe50bc84a5a2c672c95e35",
      "sha256:922badbaf192e1a4a5af64df422de6d73e96e70d0ab52245bd3d692bcea9cfad",
      "sha256:6bdb18f83935f1d97220ee8035e6ccd7e764c32102587be4488f940f943ebda6"};
  EXPECT_EQ(ChainIds(diffs),
            (std::vector<std::string>{
                "sha256:ff5eba71a8188ea1e1d463b58f6ad20fb3736ae6e2fe50bc84a5a2c672c95e35",
                "sha256:5f6d0bbaeb87c061087581d0bb11f33c74cb36cf29cc61ae268000b23e76d7ea",
                "sha256:cfbc7be4da896d221fd750e87b75e0c564321f2edc36435f7c5c7afd7d27478a"}));
  EXPECT_TRUE(ChainIds({}).empty());
  EXPECT_EQ(ChainIds({diffs[2]}), std::vector<std::string>{diffs[2]});
}

}  // namespace
}  // namespace berth::client
