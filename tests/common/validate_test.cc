#include "common/validate.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(IdentifierTest, Valid) {
  for (const char* id : {"a", "default", "k8s.io", "moby", "plugins.moby", "a-b_c.d", "A9", "0"}) {
    EXPECT_TRUE(ValidateIdentifier(id).ok()) << id;
  }
  EXPECT_TRUE(ValidateIdentifier(std::string(76, 'a')).ok());
}

TEST(IdentifierTest, Invalid) {
  for (const char* id : {"", "-a", "a-", ".a", "a.", "a..b", "a-.b", "foo--bar", "bad name",
                         "a/b", "../x", "a\nb", "ä", "a:b", "a@b", "_"}) {
    Status s = ValidateIdentifier(id);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << Quote(id);
  }
  Status s = ValidateIdentifier(std::string(77, 'a'));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("greater than maximum length (76 characters)"), std::string::npos);
  EXPECT_EQ(ValidateIdentifier("").message(), "identifier must not be empty");
  EXPECT_EQ(ValidateIdentifier("bad name").message(),
            "identifier \"bad name\" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$");
  EXPECT_EQ(ValidateIdentifier(std::string("a\0b", 3)).code(), Code::kInvalidArgument);
}

TEST(LabelTest, SizeLimitIsKeyPlusValue) {
  EXPECT_TRUE(ValidateLabel(std::string(2048, 'k'), std::string(2048, 'v')).ok());
  Status s = ValidateLabel(std::string(2048, 'k'), std::string(2049, 'v'));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  // containerd truncates the key to 10 bytes in the message.
  EXPECT_EQ(s.message(),
            "label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk");
  EXPECT_EQ(ValidateLabels({{"a", "b"}, {"big", std::string(1 << 20, 'x')}}).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(ValidateLabels({{"a", ""}, {"containerd.io/gc.root", "x"}}).ok());
}

TEST(QuoteTest, GoStyle) {
  EXPECT_EQ(Quote("abc"), "\"abc\"");
  EXPECT_EQ(Quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Quote("a\nb\x01"), "\"a\\nb\\x01\"");
}

}  // namespace
}  // namespace berth
