#include "common/digest.h"

#include <gtest/gtest.h>

#include <string>

namespace berth {
namespace {

TEST(ValidateDigestTest, GoDigestRules) {
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateDigest("sha384:" + std::string(96, '0')).ok());
  EXPECT_TRUE(ValidateDigest("sha512:" + std::string(128, 'f')).ok());
  struct Case {
    std::string digest;
    std::string message;
  };
  const Case cases[] = {
      {"", "invalid checksum digest format"},
      {"sha256", "invalid checksum digest format"},
      {"sha256:", "invalid checksum digest format"},
      {":" + std::string(64, 'a'), "invalid checksum digest format"},
      {"sha256:" + std::string(63, 'a'), "invalid checksum digest length"},
      {"sha256:" + std::string(65, 'a'), "invalid checksum digest length"},
      {"sha256:" + std::string(64, 'A'), "invalid checksum digest format"},
      {"sha256:" + std::string(64, 'g'), "invalid checksum digest format"},
      {"sha512:" + std::string(64, 'a'), "invalid checksum digest length"},
      {"md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"},
      {"sha1+b64:abc=", "unsupported digest algorithm"},
      {"SHA256:" + std::string(64, 'a'), "invalid checksum digest format"},
      {"sha256:" + std::string(64, 'a') + "\n", "invalid checksum digest length"},
  };
  for (const Case& c : cases) {
    Status s = ValidateDigest(c.digest);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << c.digest;
    EXPECT_EQ(s.message(), c.message) << c.digest;
  }
}

}  // namespace
}  // namespace berth
