#include "metadata/db.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace berth::metadata {
namespace {

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-db-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/meta.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

TEST_F(DbTest, OpenMigratesToLatest) {
  auto db = Db::Open(path_);
  ASSERT_TRUE(db) << db.error().ToString();
  EXPECT_EQ((*db)->schema_version(), Db::LatestSchemaVersion());
  // WAL + FULL sync are what make a committed transaction survive kill -9.
  Status s = (*db)->View([](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("PRAGMA journal_mode"));
    ASSIGN_OR_RETURN(bool row, st.Step());
    EXPECT_TRUE(row);
    EXPECT_EQ(st.ColumnText(0), "wal");
    ASSIGN_OR_RETURN(Stmt sync, tx.Prepare("PRAGMA synchronous"));
    ASSIGN_OR_RETURN(row, sync.Step());
    EXPECT_EQ(sync.ColumnInt(0), 2);  // FULL
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// Statements are cached per connection (issue 12 #13): a reused statement starts with no
// bindings and from its first row, and the same SQL may be in use twice at once.
TEST_F(DbTest, CachedStatementsAreResetAndNestable) {
  auto db = Db::Open(path_);
  ASSERT_TRUE(db) << db.error().ToString();
  constexpr char kIns[] = "INSERT INTO settings(key, value) VALUES(?, ?)";
  constexpr char kSel[] = "SELECT key, value FROM settings WHERE key LIKE 'k%' ORDER BY key";
  for (int round = 0; round < 3; ++round) {
    Status s = (*db)->Update([&](Tx& tx) -> Status {
      ASSIGN_OR_RETURN(Stmt ins, tx.Prepare(kIns));
      ins.Bind(1, "k" + std::to_string(round)).Bind(2, "v" + std::to_string(round));
      return ins.Exec();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // A statement left mid-iteration goes back reset: the next use sees every row again.
  for (int round = 0; round < 2; ++round) {
    Status s = (*db)->View([&](Tx& tx) -> Status {
      ASSIGN_OR_RETURN(Stmt outer, tx.Prepare(kSel));
      int outer_rows = 0, inner_rows = 0;
      while (true) {
        ASSIGN_OR_RETURN(bool row, outer.Step());
        if (!row) break;
        ++outer_rows;
        ASSIGN_OR_RETURN(Stmt inner, tx.Prepare(kSel));  // the same SQL, nested
        ASSIGN_OR_RETURN(bool first, inner.Step());
        EXPECT_TRUE(first);
        EXPECT_EQ(inner.ColumnText(0), "k0");
        ++inner_rows;
      }
      EXPECT_EQ(outer_rows, 3);
      EXPECT_EQ(inner_rows, 3);
      ASSIGN_OR_RETURN(Stmt partial, tx.Prepare(kSel));
      ASSIGN_OR_RETURN(bool row, partial.Step());
      EXPECT_TRUE(row);
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // A reused insert has no bindings left over: value stays NULL, which NOT NULL refuses (a
  // stale binding would have stored the last round's value).
  Status s = (*db)->Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt ins, tx.Prepare(kIns));
    ins.Bind(1, "k9");
    return ins.Exec();
  });
  EXPECT_FALSE(s.ok());
  auto v = (*db)->GetSetting("k9");
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_FALSE(v->has_value());
}

TEST_F(DbTest, ReopenKeepsDataAndSettings) {
  {
    auto db = Db::Open(path_);
    ASSERT_TRUE(db);
    EXPECT_EQ(*(*db)->GetOrSetSetting("uuid", "first"), "first");
  }
  auto db = Db::Open(path_);
  ASSERT_TRUE(db);
  // A second value never replaces the stored one: the server UUID is stable.
  EXPECT_EQ(*(*db)->GetOrSetSetting("uuid", "second"), "first");
  auto got = (*db)->GetSetting("uuid");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value_or(""), "first");
  EXPECT_FALSE((*db)->GetSetting("missing")->has_value());
}

TEST_F(DbTest, FailedUpdateRollsBack) {
  auto db = Db::Open(path_);
  ASSERT_TRUE(db);
  Status s = (*db)->Update([](Tx& tx) -> Status {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO settings(key, value) VALUES('k', 'v')"));
    return InvalidArgument("changed my mind");
  });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_FALSE((*db)->GetSetting("k")->has_value());
}

TEST_F(DbTest, ExceptionInUpdateBecomesInternalAndRollsBack) {
  auto db = Db::Open(path_);
  ASSERT_TRUE(db);
  Status s = (*db)->Update([](Tx& tx) -> Status {
    (void)tx.Exec("INSERT INTO settings(key, value) VALUES('k', 'v')");
    throw std::runtime_error("boom");
  });
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_FALSE((*db)->GetSetting("k")->has_value());
}

TEST_F(DbTest, ReadOnlyViewCannotWrite) {
  auto db = Db::Open(path_);
  ASSERT_TRUE(db);
  Status s = (*db)->View(
      [](Tx& tx) -> Status { return tx.Exec("INSERT INTO settings(key, value) VALUES('a','b')"); });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE((*db)->GetSetting("a")->has_value());
}

TEST_F(DbTest, CorruptFileIsRefusedAndKept) {
  {
    std::ofstream f(path_, std::ios::binary);
    f << std::string(8192, 'x');  // not a database
  }
  auto db = Db::Open(path_);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code(), Code::kDataLoss);
  EXPECT_NE(db.error().message().find(path_), std::string::npos);
  EXPECT_EQ(std::filesystem::file_size(path_), 8192u);  // never overwritten
}

TEST_F(DbTest, NewerSchemaIsRefused) {
  {
    auto db = Db::Open(path_);
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Update([](Tx& tx) { return tx.Exec("PRAGMA user_version=999"); }).ok());
  }
  auto db = Db::Open(path_);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace berth::metadata
