// The metadata database: SQLite in WAL mode with synchronous=FULL, so a committed transaction
// survives kill -9 and power loss, and readers never block the writer.
//
// One writer connection, serialised by a mutex (SQLite allows one writer anyway; queuing here
// avoids SQLITE_BUSY). Readers take a connection from a small pool and see a consistent
// snapshot for the length of their View. The schema is versioned with PRAGMA user_version and
// migrated forward on Open, inside one transaction per step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

struct sqlite3;
struct sqlite3_stmt;

namespace berth::metadata {

struct Conn;

// A prepared statement bound to one connection. Bind* indexes start at 1, Column* at 0.
// Statements are cached per connection: destroying a Stmt resets it and gives it back, so the
// next Prepare of the same SQL skips SQLite's parser (which was ~18% of berthd's CPU per
// container; issue 12 #13).
class Stmt {
 public:
  Stmt(Conn* conn, std::string sql, sqlite3_stmt* stmt)
      : conn_(conn), sql_(std::move(sql)), stmt_(stmt) {}
  Stmt(Stmt&& o) noexcept : conn_(o.conn_), sql_(std::move(o.sql_)), stmt_(o.stmt_) {
    o.stmt_ = nullptr;
  }
  Stmt(const Stmt&) = delete;
  ~Stmt();

  Stmt& Bind(int i, std::string_view text);
  Stmt& Bind(int i, int64_t value);
  Stmt& Bind(int i, const char* text) { return Bind(i, std::string_view(text)); }
  Stmt& Bind(int i, const std::string& text) { return Bind(i, std::string_view(text)); }
  Stmt& BindBlob(int i, std::string_view bytes);
  Stmt& BindNull(int i);

  // Advances; true while a row is available. Errors are Internal (or ResourceExhausted on a
  // full disk) and carry SQLite's message.
  Result<bool> Step();
  // Runs to completion, ignoring rows.
  Status Exec();

  std::string ColumnText(int i) const;
  int64_t ColumnInt(int i) const;
  bool ColumnIsNull(int i) const;

  // Makes the statement reusable with new bindings.
  void Reset();

 private:
  Conn* conn_;
  std::string sql_;
  sqlite3_stmt* stmt_;
};

// A transaction handed to Update/View callbacks. Valid only inside the callback.
class Tx {
 public:
  Tx(Conn* conn, bool writable);
  Result<Stmt> Prepare(std::string_view sql);
  // Runs one or more statements with no parameters.
  Status Exec(std::string_view sql);
  bool writable() const { return writable_; }
  // Number of rows changed by the last statement.
  int64_t Changes() const;

 private:
  Conn* conn_;
  sqlite3* db_;
  bool writable_;
};

class Db {
 public:
  // Opens (creating if needed) and migrates the database at `path`. A corrupt file is refused
  // with DataLoss and a message naming the file; it is never overwritten.
  static Result<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();

  // Read-write transaction: committed if fn returns OK, rolled back otherwise.
  Status Update(const std::function<Status(Tx&)>& fn);
  // Read-only transaction on a consistent snapshot.
  Status View(const std::function<Status(Tx&)>& fn) const;

  int schema_version() const { return schema_version_; }

  // Garbage collection's lock. Anything that makes backend data (a blob file, a snapshot
  // dir) reachable in two steps — e.g. rename a blob into place, then insert its content row —
  // holds it shared across both steps; GC holds it exclusively while it decides what is
  // unreferenced and deletes it, so it never removes data whose row is about to appear.
  std::shared_mutex& gc_lock() { return gc_mu_; }
  static int LatestSchemaVersion();

  // Value from the `settings` table (e.g. the server UUID); nullopt when absent.
  Result<std::optional<std::string>> GetSetting(const std::string& key) const;
  // Stores `value` unless the key already has one; returns the stored value either way.
  Result<std::string> GetOrSetSetting(const std::string& key, const std::string& value);

  // Number of rows in table `table` (a plain identifier), for tests that check nothing is
  // left behind. Errors: InvalidArgument (not an identifier), Internal (no such table).
  Result<int64_t> CountRowsForTest(std::string_view table) const;

 private:
  Db();
  Status Migrate();

  std::string path_;
  int schema_version_ = 0;
  std::mutex write_mu_;
  std::unique_ptr<Conn> writer_ GUARDED_BY(write_mu_);
  std::shared_mutex gc_mu_;
  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<Conn>> readers_ GUARDED_BY(pool_mu_);  // idle readers
};

}  // namespace berth::metadata
