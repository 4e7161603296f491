// tasks::Manager::ResolveBinary: runtime name → shim binary (containerd-compat.md §7.1, plus
// our default: io.containerd.runc.v2 and io.containerd.berth.v2 run containerd-shim-berth-v2).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "events/exchange.h"
#include "tasks/shim_manager.h"

namespace berth::tasks {
namespace {

namespace fs = std::filesystem;

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-resolve-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* d : {"/self", "/path1", "/path2", "/state", "/work"}) {
      fs::create_directories(dir_ + d);
    }
    old_path_ = getenv("PATH") ? getenv("PATH") : "";
    ::setenv("PATH", (dir_ + "/path1:" + dir_ + "/path2").c_str(), 1);
  }
  void TearDown() override {
    ::setenv("PATH", old_path_.c_str(), 1);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Exe(const std::string& path) {
    std::ofstream(path) << "#!/bin/sh\n";
    ::chmod(path.c_str(), 0755);
  }
  std::unique_ptr<Manager> Make(std::map<std::string, std::string> binaries = {}) {
    ManagerConfig c{.state_dir = dir_ + "/state",
                    .work_dir = dir_ + "/work",
                    .grpc_address = dir_ + "/g.sock",
                    .ttrpc_address = dir_ + "/g.sock.ttrpc",
                    .publish_binary = dir_ + "/self/berthd",
                    .shim_run_dir = dir_,
                    .binaries = std::move(binaries)};
    auto m = Manager::Create(std::move(c), exchange_);
    EXPECT_TRUE(m.has_value());
    return m ? std::move(*m) : nullptr;
  }

  std::string dir_, old_path_;
  events::Exchange exchange_;
};

TEST_F(ResolveTest, OurShimNextToBerthdFirst) {
  Exe(dir_ + "/self/containerd-shim-berth-v2");
  Exe(dir_ + "/path1/containerd-shim-berth-v2");
  Exe(dir_ + "/path1/containerd-shim-runc-v2");
  auto m = Make();
  EXPECT_EQ(m->ResolveBinary("io.containerd.runc.v2").value(), dir_ + "/self/containerd-shim-berth-v2");
  EXPECT_EQ(m->ResolveBinary("io.containerd.berth.v2").value(), dir_ + "/self/containerd-shim-berth-v2");
}

TEST_F(ResolveTest, OurShimFromPathWhenNotNextToBerthd) {
  Exe(dir_ + "/path2/containerd-shim-berth-v2");
  Exe(dir_ + "/path1/containerd-shim-runc-v2");
  auto m = Make();
  EXPECT_EQ(m->ResolveBinary("io.containerd.runc.v2").value(), dir_ + "/path2/containerd-shim-berth-v2");
}

TEST_F(ResolveTest, ConfigWins) {
  Exe(dir_ + "/self/containerd-shim-berth-v2");
  auto m = Make({{"io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2"}});
  EXPECT_EQ(m->ResolveBinary("io.containerd.runc.v2").value(), "/usr/bin/containerd-shim-runc-v2");
  EXPECT_EQ(m->ResolveBinary("io.containerd.berth.v2").value(), dir_ + "/self/containerd-shim-berth-v2");
}

TEST_F(ResolveTest, OtherNamesByContainerdRulePathFirst) {
  Exe(dir_ + "/self/containerd-shim-foo-v1");
  Exe(dir_ + "/path2/containerd-shim-foo-v1");
  Exe(dir_ + "/self/containerd-shim-bar-v2");
  auto m = Make();
  EXPECT_EQ(m->ResolveBinary("io.containerd.foo.v1").value(), dir_ + "/path2/containerd-shim-foo-v1");
  EXPECT_EQ(m->ResolveBinary("io.containerd.bar.v2").value(), dir_ + "/self/containerd-shim-bar-v2");
}

TEST_F(ResolveTest, Errors) {
  auto m = Make();
  auto r = m->ResolveBinary("io.containerd.runc.v2");  // our shim is nowhere
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_NE(r.error().ToString().find("containerd-shim-berth-v2"), std::string::npos);
  r = m->ResolveBinary("runc");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  r = m->ResolveBinary(dir_ + "/nope");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace berth::tasks
