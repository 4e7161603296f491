// The metadata database under storage faults: a test VFS (registered as SQLite's default,
// wrapping the real one) fails the k-th write with SQLITE_FULL or SQLITE_IOERR_WRITE, or the
// k-th sync with SQLITE_IOERR_FSYNC. For every k: the failing call reports a clear error
// (ResourceExhausted "database or disk is full" naming the file for SQLITE_FULL), the same Db
// keeps working once the fault is gone (no transaction left open), and the file reopens
// consistent — every namespace is there with all its labels, or not at all.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>

#include "metadata/db.h"
#include "metadata/namespaces.h"

namespace berth::metadata {
namespace {

// ---- the fault VFS --------------------------------------------------------------------------

struct Faults {
  std::atomic<int> writes{0}, syncs{0};
  std::atomic<int> fail_write_at{0}, fail_sync_at{0};  // 1-based call to fail, 0 = none
  std::atomic<int> write_rc{SQLITE_FULL};
  std::atomic<int> injected{0};
  void Reset() {
    writes = syncs = fail_write_at = fail_sync_at = injected = 0;
  }
};
Faults g_faults;
sqlite3_vfs* g_base = nullptr;

struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;  // the wrapped VFS's file, allocated right after this struct
};
sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }

int FClose(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int FRead(sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
  return Real(f)->pMethods->xRead(Real(f), b, n, o);
}
int FWrite(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  int k = ++g_faults.writes;
  if (k == g_faults.fail_write_at) {
    ++g_faults.injected;
    return g_faults.write_rc;
  }
  return Real(f)->pMethods->xWrite(Real(f), b, n, o);
}
int FTruncate(sqlite3_file* f, sqlite3_int64 size) {
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int FSync(sqlite3_file* f, int flags) {
  int k = ++g_faults.syncs;
  if (k == g_faults.fail_sync_at) {
    ++g_faults.injected;
    return SQLITE_IOERR_FSYNC;
  }
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int FFileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int FLock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int FUnlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int FCheckReserved(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FFileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int FSectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int FDeviceChars(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int FShmMap(sqlite3_file* f, int pg, int sz, int extend, void volatile** p) {
  return Real(f)->pMethods->xShmMap(Real(f), pg, sz, extend, p);
}
int FShmLock(sqlite3_file* f, int off, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), off, n, flags);
}
void FShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int FShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
int FFetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
  return Real(f)->pMethods->xFetch(Real(f), o, n, p);
}
int FUnfetch(sqlite3_file* f, sqlite3_int64 o, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), o, p);
}

const sqlite3_io_methods kMethods = {
    3,         FClose,        FRead,        FWrite,        FTruncate, FSync,     FFileSize,
    FLock,     FUnlock,       FCheckReserved, FFileControl, FSectorSize, FDeviceChars,
    FShmMap,   FShmLock,      FShmBarrier,  FShmUnmap,     FFetch,    FUnfetch,
};

int VOpen(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->real = reinterpret_cast<sqlite3_file*>(ff + 1);
  ff->base.pMethods = nullptr;
  int rc = g_base->xOpen(g_base, name, ff->real, flags, out);
  if (rc == SQLITE_OK && ff->real->pMethods != nullptr) ff->base.pMethods = &kMethods;
  return rc;
}
int VDelete(sqlite3_vfs*, const char* n, int s) { return g_base->xDelete(g_base, n, s); }
int VAccess(sqlite3_vfs*, const char* n, int f, int* o) {
  return g_base->xAccess(g_base, n, f, o);
}
int VFullPath(sqlite3_vfs*, const char* n, int sz, char* out) {
  return g_base->xFullPathname(g_base, n, sz, out);
}
int VRandomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int VSleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int VCurrentTime(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int VLastError(sqlite3_vfs*, int n, char* b) { return g_base->xGetLastError(g_base, n, b); }
int VCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) {
  return g_base->xCurrentTimeInt64(g_base, t);
}

sqlite3_vfs g_vfs;

// Registers the fault VFS as the default for the test's lifetime.
class FaultVfs {
 public:
  FaultVfs() {
    g_base = sqlite3_vfs_find(nullptr);
    std::memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = "berth-fault";
    g_vfs.xOpen = VOpen;
    g_vfs.xDelete = VDelete;
    g_vfs.xAccess = VAccess;
    g_vfs.xFullPathname = VFullPath;
    g_vfs.xRandomness = VRandomness;
    g_vfs.xSleep = VSleep;
    g_vfs.xCurrentTime = VCurrentTime;
    g_vfs.xGetLastError = VLastError;
    g_vfs.xCurrentTimeInt64 = VCurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, /*makeDflt=*/1);
    g_faults.Reset();
  }
  ~FaultVfs() {
    sqlite3_vfs_unregister(&g_vfs);
    g_faults.Reset();
  }
};

// ---- the tests ------------------------------------------------------------------------------

class DbFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-dbfault-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string Path(int k) const { return dir_ + "/meta-" + std::to_string(k) + ".db"; }
  std::string dir_;

  // Creates namespaces ns0..ns5, each with three labels, in one transaction each.
  static Status Workload(Db& db) {
    NamespaceStore ns(db);
    for (int i = 0; i < 6; ++i) {
      std::string v(600, static_cast<char>('a' + i));
      RETURN_IF_ERROR(ns.Create("ns" + std::to_string(i), {{"a", v}, {"b", v}, {"c", v}}));
    }
    return Status::Ok();
  }

  // Every namespace is whole (three labels) or absent; the store can finish the workload.
  static void CheckConsistent(Db& db) {
    NamespaceStore ns(db);
    auto list = ns.List();
    ASSERT_TRUE(list.has_value()) << list.error().ToString();
    for (const auto& n : *list) EXPECT_EQ(n.labels.size(), 3u) << n.name << " is partial";
    for (int i = 0; i < 6; ++i) {
      std::string name = "ns" + std::to_string(i);
      if (ns.GetLabels(name).has_value()) continue;
      std::string v(600, static_cast<char>('a' + i));
      Status s = ns.Create(name, {{"a", v}, {"b", v}, {"c", v}});
      EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
    }
  }

  // Runs the workload once per k with the fault armed at the k-th call; counts the points.
  void RunFaults(bool sync, int rc, Code want_code, const char* want_text, int* points) {
    FaultVfs vfs;
    int n = 0;
    {
      auto db = Db::Open(Path(0));
      ASSERT_TRUE(db.has_value());
      g_faults.Reset();
      EXPECT_TRUE(Workload(**db).ok());
      n = sync ? g_faults.syncs.load() : g_faults.writes.load();
    }
    EXPECT_GT(n, 5);
    for (int k = 1; k <= n && k <= 200; ++k) {
      SCOPED_TRACE("fault at call " + std::to_string(k) + " of " + std::to_string(n));
      {
        auto db = Db::Open(Path(k));
        ASSERT_TRUE(db.has_value()) << db.error().ToString();
        g_faults.Reset();
        g_faults.write_rc = rc;
        (sync ? g_faults.fail_sync_at : g_faults.fail_write_at) = k;
        Status s = Workload(**db);
        if (g_faults.injected > 0) {
          EXPECT_FALSE(s.ok()) << "a failed write was not reported";
          EXPECT_EQ(s.code(), want_code) << s.ToString();
          EXPECT_NE(s.message().find(want_text), std::string::npos) << s.ToString();
          if (rc == SQLITE_FULL) {
            EXPECT_NE(s.message().find(Path(k)), std::string::npos)
                << "the error should name the database file: " << s.ToString();
          }
        }
        g_faults.Reset();
        // The same connection recovers once the disk does.
        CheckConsistent(**db);
      }
      auto db = Db::Open(Path(k));
      ASSERT_TRUE(db.has_value()) << "reopen: " << db.error().ToString();
      CheckConsistent(**db);
      ++*points;
    }
  }
};

TEST_F(DbFaultTest, DiskFullAtEveryWrite) {
  int points = 0;
  RunFaults(false, SQLITE_FULL, Code::kResourceExhausted, "database or disk is full", &points);
  EXPECT_GT(points, 5);
  std::printf("metadata: %d SQLITE_FULL points\n", points);
}

TEST_F(DbFaultTest, IoErrorAtEveryWrite) {
  int points = 0;
  RunFaults(false, SQLITE_IOERR_WRITE, Code::kInternal, "disk I/O error", &points);
  EXPECT_GT(points, 5);
  std::printf("metadata: %d SQLITE_IOERR_WRITE points\n", points);
}

TEST_F(DbFaultTest, IoErrorAtEverySync) {
  int points = 0;
  RunFaults(true, SQLITE_IOERR_WRITE, Code::kInternal, "disk I/O error", &points);
  EXPECT_GT(points, 3);
  std::printf("metadata: %d SQLITE_IOERR_FSYNC points\n", points);
}

}  // namespace
}  // namespace berth::metadata
