#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "daemon/daemon.h"

namespace berth::daemon {
namespace {

class ClaimSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-sock-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/d.sock";
  }
  void TearDown() override {
    if (listener_ >= 0) ::close(listener_);
    std::filesystem::remove_all(dir_);
  }
  // Binds a socket at path_; listens if `listen`. Leaves the file behind either way.
  void Bind(bool listen) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (listen) {
      ASSERT_EQ(::listen(listener_, 1), 0);
    } else {
      ::close(listener_);
      listener_ = -1;
    }
  }
  std::string dir_, path_;
  int listener_ = -1;
};

TEST_F(ClaimSocketTest, NothingThereIsFine) { EXPECT_TRUE(ClaimSocket(path_).ok()); }

TEST_F(ClaimSocketTest, StaleSocketIsRemoved) {
  Bind(false);
  ASSERT_TRUE(std::filesystem::exists(path_));
  EXPECT_TRUE(ClaimSocket(path_).ok());
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ClaimSocketTest, LiveSocketIsRefused) {
  Bind(true);
  Status s = ClaimSocket(path_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("already serving"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(ClaimSocketTest, RegularFileIsLeftAlone) {
  std::ofstream(path_) << "precious";
  Status s = ClaimSocket(path_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  std::ifstream f(path_);
  std::string text;
  f >> text;
  EXPECT_EQ(text, "precious");
}

TEST_F(ClaimSocketTest, TooLongPathIsInvalid) {
  EXPECT_EQ(ClaimSocket("/tmp/" + std::string(200, 'x')).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::daemon
