// The content store under injected faults (common/env.h seam, FaultInjectionEnv): every
// single failure of every file operation the ingest/commit path makes, ENOSPC after N bytes,
// and a crash after each operation with unsynced data dropped. After each:
//   * no partial blob is ever visible under a digest (every blob's bytes hash to its name),
//   * a blob whose Commit returned OK is still there after the crash,
//   * the metadata database and the store reopen (recovery runs), every content row has its
//     blob, and the interrupted writes can be finished by resuming from the offset reported.
#include <gtest/gtest.h>

#include <set>

#include "content/digest.h"
#include "content/local/store.h"
#include "fault_injection_env.h"
#include "metadata/content_store.h"
#include "metadata/db.h"
#include "test_util.h"

namespace berth::content {
namespace {

using fault::FaultInjectionEnv;
using Op = FaultInjectionEnv::Op;
using testing::TempDir;

constexpr char kNs[] = "default";

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return s;
}

struct Blob {
  std::string ref;
  std::string data;
  std::string digest;
};

class LocalStoreFaultTest : public ::testing::Test {
 protected:
  LocalStoreFaultTest() {
    blobs_.push_back({"ref-a", Pattern(300 * 1024 + 7, 1), ""});
    blobs_.push_back({"ref-b", Pattern(70 * 1024 + 3, 2), ""});
    for (auto& b : blobs_) b.digest = DigestOf(b.data);
  }

  struct Stores {
    std::unique_ptr<metadata::Db> db;
    std::unique_ptr<LocalStore> local;
    std::unique_ptr<metadata::ContentStore> meta;
  };

  // Opens the DB and the store under `root`; the store writes through `env`.
  static Result<Stores> OpenStores(const std::string& root, Env& env) {
    Stores s;
    ASSIGN_OR_RETURN(s.db, metadata::Db::Open(root + "/meta.db"));
    ASSIGN_OR_RETURN(s.local, LocalStore::Open(root + "/content", env));
    s.local->SetLockAttemptsForTest(1);
    s.meta = std::make_unique<metadata::ContentStore>(*s.db, *s.local);
    return s;
  }

  // The workload: blob a in three writes and a commit; blob b written half, left (writer
  // closed), resumed from the offset the store reports, and committed. Returns which commits
  // were acknowledged; stops at the first error, as a client would.
  std::set<std::string> Workload(metadata::ContentStore& store) {
    std::set<std::string> acked;
    {
      const Blob& a = blobs_[0];
      auto w = store.OpenWriter(kNs, "", a.ref, static_cast<int64_t>(a.data.size()), a.digest);
      if (!w) return acked;
      std::string_view d = a.data;
      const size_t cuts[] = {0, 100000, 250000, d.size()};
      for (size_t i = 0; i + 1 < std::size(cuts); ++i) {
        if (!(*w)->Write(d.substr(cuts[i], cuts[i + 1] - cuts[i])).ok()) return acked;
      }
      if (!(*w)->Commit(static_cast<int64_t>(a.data.size()), a.digest, {}).ok()) return acked;
      acked.insert(a.digest);
    }
    const Blob& b = blobs_[1];
    {
      auto w = store.OpenWriter(kNs, "", b.ref, static_cast<int64_t>(b.data.size()), b.digest);
      if (!w) return acked;
      if (!(*w)->Write(std::string_view(b.data).substr(0, b.data.size() / 2)).ok()) return acked;
      if (!(*w)->Close().ok()) return acked;
    }
    if (!Finish(store, b).ok()) return acked;
    acked.insert(b.digest);
    return acked;
  }

  // Resumes `b` from the offset the store reports and commits it (what a client retrying the
  // pull does). AlreadyExists counts as done.
  static Status Finish(metadata::ContentStore& store, const Blob& b) {
    auto w = store.OpenWriter(kNs, "", b.ref, static_cast<int64_t>(b.data.size()), b.digest);
    if (!w) return w.error().code() == Code::kAlreadyExists ? Status::Ok() : w.error();
    ASSIGN_OR_RETURN(IngestStatus st, (*w)->Status());
    if (st.offset < 0 || st.offset > static_cast<int64_t>(b.data.size())) {
      return Internal("offset " + std::to_string(st.offset) + " out of range");
    }
    RETURN_IF_ERROR((*w)->Write(std::string_view(b.data).substr(static_cast<size_t>(st.offset))));
    Status s = (*w)->Commit(static_cast<int64_t>(b.data.size()), b.digest, {});
    return s.code() == Code::kAlreadyExists ? Status::Ok() : s;
  }

  // No partial blob under any digest; every content row has a whole blob.
  static void CheckBlobs(Stores& s) {
    ASSERT_TRUE(s.local
                    ->Walk([&](const BlobInfo& info) -> Status {
                      auto r = s.local->OpenReader(info.digest);
                      if (!r) return r.error();
                      std::string bytes(static_cast<size_t>((*r)->Size()), '\0');
                      auto n = (*r)->ReadAt(bytes.data(), bytes.size(), 0);
                      if (!n || *n != bytes.size()) return Internal("short read");
                      EXPECT_EQ(DigestOf(bytes), info.digest) << "partial blob visible";
                      return Status::Ok();
                    })
                    .ok());
    auto rows = s.meta->List(kNs, {});
    ASSERT_TRUE(rows.has_value()) << rows.error().ToString();
    for (const auto& row : *rows) {
      EXPECT_TRUE(s.local->Info(row.digest).has_value()) << "row without blob " << row.digest;
    }
  }

  // After a fault or crash: the store as left, then reopened with the real Env, is
  // consistent, keeps every acknowledged blob, and lets the client finish both blobs.
  void Verify(const std::string& root, Stores& before, const std::set<std::string>& acked,
              bool after_crash) {
    if (!after_crash) CheckBlobs(before);
    before = Stores{};
    auto reopened = OpenStores(root, Env::Default());
    ASSERT_TRUE(reopened.has_value()) << "reopen: " << reopened.error().ToString();
    CheckBlobs(*reopened);
    for (const auto& d : acked) {
      EXPECT_TRUE(reopened->local->Info(d).has_value()) << "acknowledged blob lost: " << d;
    }
    for (const auto& b : blobs_) {
      Status s = Finish(*reopened->meta, b);
      EXPECT_TRUE(s.ok()) << "finishing " << b.ref << ": " << s.ToString();
      auto info = reopened->meta->Info(kNs, b.digest);
      EXPECT_TRUE(info.has_value()) << b.ref;
    }
    CheckBlobs(*reopened);
  }

  std::vector<Blob> blobs_;
};

TEST_F(LocalStoreFaultTest, EverySingleFault) {
  // A dry run counts the calls of each operation; then each call fails once, in turn.
  std::array<int, FaultInjectionEnv::kOps> calls{};
  {
    TempDir dir;
    FaultInjectionEnv env;
    auto s = OpenStores(dir.path(), env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    ASSERT_EQ(Workload(*s->meta).size(), 2u);
    for (int i = 0; i < FaultInjectionEnv::kOps; ++i) calls[i] = env.Calls(static_cast<Op>(i));
  }
  int points = 0;
  for (int i = 0; i < FaultInjectionEnv::kOps; ++i) {
    for (int k = 1; k <= calls[i] && k <= 64; ++k) {
      // ENOSPC where a call allocates space, EIO from any call.
      Op op = static_cast<Op>(i);
      bool allocates = op == Op::kCreate || op == Op::kWrite || op == Op::kMkdir;
      for (int err : {EIO, ENOSPC}) {
        if (err == ENOSPC && !allocates) continue;
        SCOPED_TRACE(std::string(FaultInjectionEnv::OpName(static_cast<Op>(i))) + " #" +
                     std::to_string(k) + " errno " + std::to_string(err));
        TempDir dir;
        FaultInjectionEnv env;
        auto s = OpenStores(dir.path(), env);
        ASSERT_TRUE(s.has_value());
        env.Reset();
        env.FailAt(static_cast<Op>(i), k, err);
        std::set<std::string> acked = Workload(*s->meta);
        Verify(dir.path(), *s, acked, /*after_crash=*/false);
        ++points;
      }
    }
  }
  RecordProperty("fault_points", points);
  EXPECT_GE(points, 20);
  std::printf("content: %d single-fault points\n", points);
}

TEST_F(LocalStoreFaultTest, NoSpaceAfterNBytes) {
  size_t total = blobs_[0].data.size() + blobs_[1].data.size();
  int points = 0;
  for (size_t limit = 0; limit <= total + 4096; limit += total / 23 + 1) {
    SCOPED_TRACE("ENOSPC after " + std::to_string(limit) + " bytes");
    TempDir dir;
    FaultInjectionEnv env;
    auto s = OpenStores(dir.path(), env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    env.SetWriteLimit(static_cast<int64_t>(limit));
    // The write that meets the limit reports ResourceExhausted, not Internal/Unknown.
    const Blob& a = blobs_[0];
    auto w = s->meta->OpenWriter(kNs, "", a.ref, static_cast<int64_t>(a.data.size()), a.digest);
    if (w) {
      Status ws = (*w)->Write(a.data);
      if (!ws.ok()) {
        EXPECT_EQ(ws.code(), Code::kResourceExhausted) << ws.ToString();
        EXPECT_NE(ws.message().find("No space left on device"), std::string::npos);
        // All or nothing: the ingest is still at offset 0.
        auto st = (*w)->Status();
        ASSERT_TRUE(st.has_value());
        EXPECT_EQ(st->offset, 0);
      }
      (void)(*w)->Close();
    } else {
      EXPECT_EQ(w.error().code(), Code::kResourceExhausted) << w.error().ToString();
    }
    std::set<std::string> acked = Workload(*s->meta);
    Verify(dir.path(), *s, acked, /*after_crash=*/false);
    ++points;
  }
  EXPECT_GE(points, 20);
  std::printf("content: %d ENOSPC points\n", points);
}

TEST_F(LocalStoreFaultTest, CrashAfterEveryOperation) {
  int total = 0;
  {
    TempDir dir;
    FaultInjectionEnv env;
    auto s = OpenStores(dir.path(), env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    ASSERT_EQ(Workload(*s->meta).size(), 2u);
    total = env.TotalCalls();
  }
  ASSERT_GT(total, 10);
  for (int k = 0; k <= total && k <= 400; ++k) {
    SCOPED_TRACE("crash after " + std::to_string(k) + " of " + std::to_string(total));
    TempDir dir;
    FaultInjectionEnv env;
    auto s = OpenStores(dir.path(), env);
    ASSERT_TRUE(s.has_value());
    env.Reset();
    env.CrashAfter(k);
    std::set<std::string> acked = Workload(*s->meta);
    env.Crash();
    // The process is gone: drop its objects (their cleanup fails, as it would not run), then
    // the disk loses what was not synced.
    *s = Stores{};
    env.DropUnsyncedData();
    Verify(dir.path(), *s, acked, /*after_crash=*/true);
  }
  std::printf("content: %d crash points\n", total + 1);
}

// Ingest and commit times come from the injected WallClock.
TEST(LocalStoreClockTest, TimesComeFromTheClock) {
  TempDir dir;
  FakeWallClock clock(1'600'000'000'123'456'789);
  auto store = LocalStore::Open(dir.path(), Env::Default(), clock);
  ASSERT_TRUE(store.has_value());
  auto w = (*store)->OpenWriter("r", 3);
  ASSERT_TRUE(w.has_value());
  clock.Advance(5'000'000'000);
  ASSERT_TRUE((*w)->Write("abc").ok());
  auto st = (*w)->Status();
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->started_at, 1'600'000'000'123'456'789);
  EXPECT_EQ(st->updated_at, 1'600'000'005'123'456'789);
  clock.Advance(1'000'000'000);
  ASSERT_TRUE((*w)->Commit(3, DigestOf("abc"), {}).ok());
  auto info = (*store)->Info(DigestOf("abc"));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->committed_at, 1'600'000'006'123'456'789);  // the blob's mtime
}

// The on-disk store alone, without the metadata layer's Sync before Commit: Commit itself must
// make the blob durable (data, then its name).
TEST_F(LocalStoreFaultTest, CrashDuringBareCommit) {
  const Blob& a = blobs_[0];
  auto workload = [&](LocalStore& store) -> Status {
    ASSIGN_OR_RETURN(auto w, store.OpenWriter(a.ref, static_cast<int64_t>(a.data.size())));
    RETURN_IF_ERROR(w->Write(a.data));
    return w->Commit(static_cast<int64_t>(a.data.size()), a.digest, {});
  };
  int total = 0;
  {
    TempDir dir;
    FaultInjectionEnv env;
    auto store = LocalStore::Open(dir.path(), env);
    ASSERT_TRUE(store.has_value());
    env.Reset();
    ASSERT_TRUE(workload(**store).ok());
    total = env.TotalCalls();
  }
  for (int k = 0; k <= total; ++k) {
    SCOPED_TRACE("crash after " + std::to_string(k) + " of " + std::to_string(total));
    TempDir dir;
    FaultInjectionEnv env;
    auto store = LocalStore::Open(dir.path(), env);
    ASSERT_TRUE(store.has_value());
    env.Reset();
    env.CrashAfter(k);
    bool acked = workload(**store).ok();
    env.Crash();
    store->reset();
    env.DropUnsyncedData();
    auto reopened = LocalStore::Open(dir.path());
    ASSERT_TRUE(reopened.has_value()) << reopened.error().ToString();
    auto info = (*reopened)->Info(a.digest);
    if (acked) {
      EXPECT_TRUE(info.has_value()) << "acknowledged blob lost";
    }
    if (info) {
      auto r = (*reopened)->OpenReader(a.digest);
      ASSERT_TRUE(r.has_value());
      std::string bytes(static_cast<size_t>((*r)->Size()), '\0');
      ASSERT_TRUE((*r)->ReadAt(bytes.data(), bytes.size(), 0).has_value());
      EXPECT_EQ(DigestOf(bytes), a.digest) << "partial blob visible (" << bytes.size() << " bytes)";
    }
  }
}

}  // namespace
}  // namespace berth::content
