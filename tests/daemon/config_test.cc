#include "daemon/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace berth::daemon {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-cfg-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/config.toml";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& text) { std::ofstream(path_) << text; }
  std::string dir_, path_;
};

TEST_F(ConfigTest, MissingFileMeansDefaults) {
  auto cfg = LoadConfig(dir_ + "/absent.toml");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->root, "/var/lib/berth");
  EXPECT_EQ(cfg->state, "/run/berth");
  EXPECT_EQ(cfg->address, "/run/berth/berthd.sock");
  EXPECT_EQ(cfg->log_level, "info");
  EXPECT_EQ(cfg->max_recv_message_size, 16 << 20);
}

TEST_F(ConfigTest, ReadsEveryKey) {
  Write(R"(version = 1
root = "/r"
state = "/s"
[grpc]
address = "/s/x.sock"
max_recv_message_size = 1024
max_send_message_size = 2048
[debug]
level = "debug"
)");
  auto cfg = LoadConfig(path_);
  ASSERT_TRUE(cfg) << cfg.error().ToString();
  EXPECT_EQ(cfg->root, "/r");
  EXPECT_EQ(cfg->state, "/s");
  EXPECT_EQ(cfg->address, "/s/x.sock");
  EXPECT_EQ(cfg->max_recv_message_size, 1024);
  EXPECT_EQ(cfg->max_send_message_size, 2048);
  EXPECT_EQ(cfg->log_level, "debug");
}

TEST_F(ConfigTest, Errors) {
  struct Case {
    const char* text;
    const char* want;  // substring of the message
  } cases[] = {
      {"root = \n", "config.toml"},
      {"roots = \"/x\"\n", "unknown key roots"},
      {"[grpc]\naddres = \"/x\"\n", "unknown key grpc.addres"},
      {"root = 5\n", "wrong type"},
      {"version = 3\n", "unsupported config version 3"},
      {"[grpc]\nmax_recv_message_size = -1\n", "message sizes"},
  };
  for (const auto& c : cases) {
    Write(c.text);
    auto cfg = LoadConfig(path_);
    ASSERT_FALSE(cfg) << c.text;
    EXPECT_EQ(cfg.error().code(), Code::kInvalidArgument) << c.text;
    EXPECT_NE(cfg.error().message().find(c.want), std::string::npos)
        << c.text << " -> " << cfg.error().message();
  }
}

TEST_F(ConfigTest, RuntimeBinaries) {
  Write(R"(version = 1
[runtimes."io.containerd.runc.v2"]
binary = "/usr/bin/containerd-shim-runc-v2"
[runtimes.berth]
binary = "/opt/berth/shim"
)");
  auto cfg = LoadConfig(path_);
  ASSERT_TRUE(cfg) << cfg.error().ToString();
  EXPECT_EQ(cfg->runtime_binaries,
            (std::map<std::string, std::string>{
                {"io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2"},
                {"berth", "/opt/berth/shim"}}));
  Write("[runtimes.x]\nbinary = \"relative\"\n");
  EXPECT_EQ(LoadConfig(path_).error().code(), Code::kInvalidArgument);
  Write("[runtimes.x]\nbinary = \"/a\"\noptions = 1\n");
  EXPECT_EQ(LoadConfig(path_).error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::daemon

namespace berth::daemon {
namespace {

// Issue 12 item 5: one decompression bound for every layer compression.
TEST_F(ConfigTest, DiffMaxExpansionRatio) {
  auto cfg = LoadConfig(dir_ + "/absent.toml");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->max_expansion_ratio, 1100u);
  Write("version = 1\n[diff]\nmax_expansion_ratio = 0\n");
  cfg = LoadConfig(path_);
  ASSERT_TRUE(cfg) << cfg.error().ToString();
  EXPECT_EQ(cfg->max_expansion_ratio, 0u);
  Write("version = 1\n[diff]\nmax_expansion_ratio = -1\n");
  cfg = LoadConfig(path_);
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().message().find("max_expansion_ratio"), std::string::npos);
  Write("version = 1\n[diff]\nmax_expansion = 5\n");
  cfg = LoadConfig(path_);
  ASSERT_FALSE(cfg);
  EXPECT_NE(cfg.error().message().find("unknown key diff.max_expansion"), std::string::npos)
      << cfg.error().ToString();
}

}  // namespace
}  // namespace berth::daemon
