// The snapshotters under injected faults (common/env.h seam, FaultInjectionEnv), over both
// backends: every single failure of the backend's directory operations (mkdir, rename, fsync)
// and a crash after each of them with unsynced entries undone. After each, with the metadata
// database and the backend reopened: a snapshot is committed (with its data directory) or
// absent, every acknowledged Commit survives, and the workload can be finished.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "fault_injection_env.h"
#include "metadata/db.h"
#include "metadata/snapshot_store.h"
#include "snapshots/native/native.h"
#include "snapshots/overlay/overlay.h"

namespace berth::snapshots {
namespace {

namespace stdfs = std::filesystem;
using fault::FaultInjectionEnv;
using Op = FaultInjectionEnv::Op;
const Ctx kCtx{"ns", ""};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class SnapshotFaultTest : public ::testing::TestWithParam<std::string> {
 protected:
  struct Stores {
    std::unique_ptr<metadata::Db> db;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<metadata::SnapshotStore> sn;
  };

  void SetUp() override {
    char tmpl[] = "/tmp/berth-snap-fault-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
  }

  Result<Stores> Open(const std::string& root, Env& env) {
    Stores s;
    stdfs::create_directories(root);
    ASSIGN_OR_RETURN(s.db, metadata::Db::Open(root + "/meta.db"));
    if (GetParam() == "overlayfs") {
      ASSIGN_OR_RETURN(s.backend, OverlayBackend::Open(root + "/overlayfs", true, env));
    } else {
      ASSIGN_OR_RETURN(s.backend, NativeBackend::Open(root + "/native", env));
    }
    s.sn = std::make_unique<metadata::SnapshotStore>(*s.db, *s.backend);
    return s;
  }

  // The writable directory of an Active snapshot, or the data a View shows.
  static std::string DataDir(const std::vector<Mount>& m) {
    if (m[0].type == "bind") return m[0].source;
    for (const auto& o : m[0].options) {
      if (o.starts_with("upperdir=")) return o.substr(9);
    }
    return "";
  }

  // One layer as an unpack makes it: Prepare, write a file, Commit. Skipped when committed.
  static Status Layer(metadata::SnapshotStore& sn, const std::string& name,
                      const std::string& parent, std::set<std::string>* acked) {
    if (auto st = sn.Stat(kCtx, name); st && st->kind == Kind::kCommitted) return Status::Ok();
    std::string key = "extract-" + name;
    if (auto st = sn.Stat(kCtx, key); st) RETURN_IF_ERROR(sn.Remove(kCtx, key));
    ASSIGN_OR_RETURN(auto m, sn.Prepare(kCtx, key, parent, {}));
    std::ofstream(DataDir(m) + "/" + name) << name;
    RETURN_IF_ERROR(sn.Commit(kCtx, name, key, {}));
    if (acked) acked->insert(name);
    return Status::Ok();
  }

  static std::set<std::string> Workload(metadata::SnapshotStore& sn) {
    std::set<std::string> acked;
    if (!Layer(sn, "base", "", &acked).ok()) return acked;
    if (!Layer(sn, "top", "base", &acked).ok()) return acked;
    if (sn.Prepare(kCtx, "work", "top", {}).has_value()) acked.insert("work");
    return acked;
  }

  // Every snapshot is whole or absent; acknowledged ones exist; the workload can be finished.
  void Verify(const std::set<std::string>& acked) {
    auto s = Open(dir_, Env::Default());
    ASSERT_TRUE(s.has_value()) << "reopen: " << s.error().ToString();
    auto& sn = *s->sn;
    std::map<std::string, std::vector<std::string>> files = {{"base", {"base"}},
                                                            {"top", {"base", "top"}}};
    for (const auto& [name, want] : files) {
      auto st = sn.Stat(kCtx, name);
      if (!st) {
        EXPECT_EQ(st.error().code(), Code::kNotFound) << name;
        EXPECT_FALSE(acked.contains(name)) << "acknowledged commit lost: " << name;
        continue;
      }
      EXPECT_EQ(st->kind, Kind::kCommitted) << name;
      // Its data: a view shows the file of every layer in the chain.
      auto v = sn.View(kCtx, "check-" + name, name, {});
      ASSERT_TRUE(v.has_value()) << name << ": " << v.error().ToString();
      if ((*v)[0].type == "bind") {
        EXPECT_EQ(ReadAll(DataDir(*v) + "/" + name), name) << name << " data lost";
      } else {
        for (const auto& o : (*v)[0].options) {
          if (!o.starts_with("lowerdir=")) continue;
          std::string dirs = o.substr(9);
          for (size_t p = 0; p <= dirs.size();) {
            size_t e = std::min(dirs.find(':', p), dirs.size());
            EXPECT_TRUE(stdfs::is_directory(dirs.substr(p, e - p))) << dirs.substr(p, e - p);
            p = e + 1;
          }
        }
      }
      ASSERT_TRUE(sn.Remove(kCtx, "check-" + name).ok());
    }
    if (auto w = sn.Mounts(kCtx, "work"); w) {
      EXPECT_TRUE(stdfs::is_directory(DataDir(*w))) << "active snapshot without data";
    } else {
      EXPECT_FALSE(acked.contains("work"));
    }
    // A client retrying finishes the work.
    (void)sn.Remove(kCtx, "work");
    std::set<std::string> done = Workload(sn);
    EXPECT_TRUE(done.contains("work"));
    EXPECT_TRUE(sn.Stat(kCtx, "top").has_value());
  }

  std::string dir_;
};

TEST_P(SnapshotFaultTest, EverySingleFault) {
  std::array<int, FaultInjectionEnv::kOps> calls{};
  {
    FaultInjectionEnv env;
    auto s = Open(dir_ + "/dry", env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    ASSERT_EQ(Workload(*s->sn).size(), 3u);
    for (int i = 0; i < FaultInjectionEnv::kOps; ++i) calls[i] = env.Calls(static_cast<Op>(i));
  }
  int points = 0;
  for (int i = 0; i < FaultInjectionEnv::kOps; ++i) {
    for (int k = 1; k <= calls[i] && k <= 32; ++k) {
      SCOPED_TRACE(std::string(FaultInjectionEnv::OpName(static_cast<Op>(i))) + " #" +
                   std::to_string(k));
      stdfs::remove_all(dir_);
      stdfs::create_directory(dir_);
      std::set<std::string> acked;
      {
        FaultInjectionEnv env;
        auto s = Open(dir_, env);
        ASSERT_TRUE(s.has_value());
        env.Reset();
        env.FailAt(static_cast<Op>(i), k, EIO);
        acked = Workload(*s->sn);
        EXPECT_EQ(env.Injected(), 1);
      }
      Verify(acked);
      ++points;
    }
  }
  EXPECT_GE(points, 6);
  std::printf("snapshots %s: %d single-fault points\n", GetParam().c_str(), points);
}

TEST_P(SnapshotFaultTest, CrashAfterEveryOperation) {
  int total = 0;
  {
    FaultInjectionEnv env;
    auto s = Open(dir_ + "/dry", env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    ASSERT_EQ(Workload(*s->sn).size(), 3u);
    total = env.TotalCalls();
  }
  ASSERT_GE(total, 3);
  for (int k = 0; k <= total && k <= 100; ++k) {
    SCOPED_TRACE("crash after " + std::to_string(k) + " of " + std::to_string(total));
    stdfs::remove_all(dir_);
    stdfs::create_directory(dir_);
    std::set<std::string> acked;
    {
      FaultInjectionEnv env;
      auto s = Open(dir_, env);
      ASSERT_TRUE(s.has_value());
      env.Reset();
      env.CrashAfter(k);
      acked = Workload(*s->sn);
      env.Crash();
      *s = Stores{};
      env.DropUnsyncedData();
    }
    Verify(acked);
  }
  std::printf("snapshots %s: %d crash points\n", GetParam().c_str(), total + 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, SnapshotFaultTest, ::testing::Values("overlayfs", "native"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace berth::snapshots
