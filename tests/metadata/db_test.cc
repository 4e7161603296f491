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
