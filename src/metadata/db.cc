#include "metadata/db.h"

#include <sqlite3.h>

#include <algorithm>
#include <unordered_map>

#include "common/log.h"
#include "common/mountinfo.h"
#include "common/validate.h"

namespace berth::metadata {
// One SQLite connection and its idle prepared statements (Stmt gives them back). Used by one
// thread at a time: the writer under write_mu_, a reader while taken from the pool.
struct Conn {
  explicit Conn(sqlite3* d) : db(d) {}
  Conn(const Conn&) = delete;
  ~Conn() {
    for (auto& [sql, stmt] : idle) sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  static constexpr size_t kMaxIdle = 256;  // bounds the cache; the tree has fewer statements
  sqlite3* db;
  std::unordered_multimap<std::string, sqlite3_stmt*> idle;
};

namespace {

// Forward-only migrations; index i moves the schema from version i to i+1. Never edit a
// released step: add a new one.
const char* const kMigrations[] = {
    // 1: settings and namespaces. Later components (images, containers, content, leases,
    // snapshots) add their own tables, each keyed by namespace.
    R"sql(
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE namespaces (
  name       TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL          -- unix nanoseconds
) WITHOUT ROWID;
CREATE TABLE namespace_labels (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
)sql",
    // 2: the objects of content, images and leases. Every table is keyed by namespace;
    // timestamps are unix nanoseconds. Labels of all object kinds live in one table.
    R"sql(
CREATE TABLE labels (
  namespace TEXT NOT NULL,
  kind      TEXT NOT NULL,             -- 'content', 'image', 'lease', later 'container', ...
  object    TEXT NOT NULL,             -- digest, image name, lease id, ...
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (namespace, kind, object, key)
) WITHOUT ROWID;
-- Blobs visible in a namespace. The bytes live once on disk (content/blobs/sha256/<hex>),
-- shared by every namespace that holds a row here.
CREATE TABLE content (
  namespace  TEXT NOT NULL REFERENCES namespaces(name),
  digest     TEXT NOT NULL,
  size       INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
-- Active ingests. `backend_ref` names the on-disk ingest (content/ingest/<sha256(backend_ref)>)
-- and is unique across namespaces: "<namespace>/<seq>/<ref>".
CREATE TABLE ingests (
  namespace   TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  ref         TEXT NOT NULL,
  backend_ref TEXT NOT NULL UNIQUE,
  expected    TEXT NOT NULL DEFAULT '', -- digest the client announced, '' if none
  expires_at  INTEGER,                  -- set for ingests outside a lease (GC root until then)
  PRIMARY KEY (namespace, ref)
) WITHOUT ROWID;
CREATE TABLE images (
  namespace   TEXT NOT NULL REFERENCES namespaces(name),
  name        TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  digest      TEXT NOT NULL,
  size        INTEGER NOT NULL,
  annotations TEXT NOT NULL DEFAULT '{}', -- JSON object of the target's annotations
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE leases (
  namespace  TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  id         TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
-- What a lease protects: type 'content' (id = digest), 'ingests' (id = ref),
-- 'snapshots/<snapshotter>' (id = key).
CREATE TABLE lease_resources (
  namespace TEXT NOT NULL,
  lease     TEXT NOT NULL,
  type      TEXT NOT NULL,
  id        TEXT NOT NULL,
  PRIMARY KEY (namespace, lease, type, id),
  FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE sequences (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
    // 3: snapshots. Keys are per namespace and snapshotter; `id` names the backend data
    // (decimal dir name), unique per snapshotter. Labels live in `labels` with kind
    // 'snapshot/<snapshotter>'.
    R"sql(
CREATE TABLE snapshots (
  namespace   TEXT NOT NULL REFERENCES namespaces(name),
  snapshotter TEXT NOT NULL,
  key         TEXT NOT NULL,            -- key (active/view) or name (committed)
  id          INTEGER NOT NULL,
  parent_key  TEXT NOT NULL DEFAULT '', -- name of the committed parent, '' for none
  kind        INTEGER NOT NULL,         -- 1 view, 2 active, 3 committed
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  size        INTEGER NOT NULL DEFAULT 0, -- usage recorded at commit
  inodes      INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (namespace, snapshotter, key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX snapshots_by_id ON snapshots(snapshotter, id);
CREATE INDEX snapshots_by_parent ON snapshots(namespace, snapshotter, parent_key);
)sql",
    // 4: containers. Labels live in `labels` with kind 'container'. The spec, the runtime
    // options and the extensions are the client's protobuf Anys (type URL + serialized value),
    // stored as sent and never parsed.
    R"sql(
CREATE TABLE containers (
  namespace            TEXT NOT NULL REFERENCES namespaces(name),
  id                   TEXT NOT NULL,
  image                TEXT NOT NULL DEFAULT '',
  runtime_name         TEXT NOT NULL,
  runtime_options_type TEXT,            -- NULL when the container has no runtime options
  runtime_options      BLOB,
  spec_type            TEXT NOT NULL,
  spec                 BLOB NOT NULL,
  snapshotter          TEXT NOT NULL DEFAULT '',
  snapshot_key         TEXT NOT NULL DEFAULT '',
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE container_extensions (
  namespace TEXT NOT NULL,
  container TEXT NOT NULL,
  name      TEXT NOT NULL,
  type_url  TEXT NOT NULL,
  value     BLOB NOT NULL,
  PRIMARY KEY (namespace, container, name),
  FOREIGN KEY (namespace, container) REFERENCES containers(namespace, id) ON DELETE CASCADE
) WITHOUT ROWID;
)sql",
};

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL: return Status(Code::kResourceExhausted, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Status(Code::kDataLoss, msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status(Code::kUnavailable, msg);
    case SQLITE_CONSTRAINT: return Status(Code::kAlreadyExists, msg);
    default: return Status(Code::kInternal, msg);
  }
}

Status ExecRaw(sqlite3* db, std::string_view sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Status s = SqliteError(nullptr, rc, "sqlite");
    return Status(s.code(), "sqlite: " + msg);
  }
  return Status::Ok();
}

// `create`: the writer connection (creates the file); readers are query-only.
Result<sqlite3*> OpenConnection(const std::string& path, bool create) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = SqliteError(db, rc, "open " + path);
    sqlite3_close(db);
    return std::unexpected(s);
  }
  sqlite3_extended_result_codes(db, 1);
  // Another process (a second berthd that lost the socket race) must never interleave writes:
  // the daemon's socket check prevents it; busy_timeout only smooths WAL checkpoints.
  sqlite3_busy_timeout(db, 5000);
  Status s = ExecRaw(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                     "PRAGMA foreign_keys=ON;");
  // Reader connections refuse writes, so a View can never modify the store by mistake.
  if (s.ok() && !create) s = ExecRaw(db, "PRAGMA query_only=ON;");
  if (!s.ok()) {
    sqlite3_close(db);
    return std::unexpected(s.Wrap("configure " + path));
  }
  return db;
}

// Runs fn in a transaction on `conn`; commits on OK, rolls back otherwise.
Status RunTx(Conn* conn, bool writable, const std::function<Status(Tx&)>& fn) {
  sqlite3* db = conn->db;
  RETURN_IF_ERROR(ExecRaw(db, writable ? "BEGIN IMMEDIATE" : "BEGIN"));
  Tx tx(conn, writable);
  Status s;
  try {
    s = fn(tx);
  } catch (const std::exception& e) {
    s = Internal(std::string("metadata transaction: ") + e.what());
  }
  if (!s.ok()) {
    (void)ExecRaw(db, "ROLLBACK");
    return s;
  }
  if (Status c = ExecRaw(db, "COMMIT"); !c.ok()) {
    (void)ExecRaw(db, "ROLLBACK");
    return c.Wrap("commit");
  }
  return Status::Ok();
}

}  // namespace

Stmt::~Stmt() {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  if (conn_->idle.size() < Conn::kMaxIdle) {
    conn_->idle.emplace(std::move(sql_), stmt_);
  } else {
    sqlite3_finalize(stmt_);
  }
}

Stmt& Stmt::Bind(int i, std::string_view text) {
  sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::Bind(int i, int64_t value) {
  sqlite3_bind_int64(stmt_, i, value);
  return *this;
}
Stmt& Stmt::BindBlob(int i, std::string_view bytes) {
  sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(SqliteError(conn_->db, rc, "sqlite step"));
}

Status Stmt::Exec() {
  for (;;) {
    ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

std::string Stmt::ColumnText(int i) const {
  const void* p = sqlite3_column_blob(stmt_, i);
  int n = sqlite3_column_bytes(stmt_, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}
int64_t Stmt::ColumnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
bool Stmt::ColumnIsNull(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Tx::Tx(Conn* conn, bool writable) : conn_(conn), db_(conn->db), writable_(writable) {}

Result<Stmt> Tx::Prepare(std::string_view sql) {
  std::string key(sql);
  // An idle copy if there is one; a statement still in use (nested loops over the same query)
  // gets a second one.
  if (auto it = conn_->idle.find(key); it != conn_->idle.end()) {
    sqlite3_stmt* stmt = it->second;
    conn_->idle.erase(it);
    return Stmt(conn_, std::move(key), stmt);
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(SqliteError(db_, rc, "sqlite prepare"));
  return Stmt(conn_, std::move(key), stmt);
}

Status Tx::Exec(std::string_view sql) { return ExecRaw(db_, sql); }

int64_t Tx::Changes() const { return sqlite3_changes64(db_); }

int Db::LatestSchemaVersion() { return static_cast<int>(std::size(kMigrations)); }

Result<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  std::unique_ptr<Db> db(new Db());
  db->path_ = path;
  // Catch a corrupt file now, with a message that names it, instead of at the first request.
  auto writer = OpenConnection(path, true);
  Status check = writer ? Status::Ok() : writer.error();
  if (writer) {
    db->writer_ = std::make_unique<Conn>(*writer);
    check = db->View([](Tx& tx) -> Status {
      ASSIGN_OR_RETURN(Stmt st, tx.Prepare("PRAGMA quick_check"));
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (row && st.ColumnText(0) != "ok") return Status(Code::kDataLoss, st.ColumnText(0));
      return Status::Ok();
    });
  }
  if (check.code() == Code::kDataLoss) {
    return std::unexpected(Status(Code::kDataLoss,
                                  "metadata database " + path + " is corrupt (" +
                                      check.message() + "); refusing to start. Inspect it with "
                                      "`sqlite3 " + path + " 'PRAGMA integrity_check'`"));
  }
  RETURN_IF_ERROR(check);
  RETURN_IF_ERROR(db->Migrate());
  return db;
}

Db::Db() = default;
Db::~Db() = default;

Status Db::Migrate() {
  std::lock_guard lock(write_mu_);
  int version = 0;
  RETURN_IF_ERROR(RunTx(writer_.get(), true, [&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("PRAGMA user_version"));
    ASSIGN_OR_RETURN(bool row, st.Step());
    version = row ? static_cast<int>(st.ColumnInt(0)) : 0;
    return Status::Ok();
  }));
  if (version > LatestSchemaVersion()) {
    return FailedPrecondition("metadata database " + path_ + " has schema version " +
                              std::to_string(version) + ", newer than this berthd understands (" +
                              std::to_string(LatestSchemaVersion()) + ")");
  }
  for (int v = version; v < LatestSchemaVersion(); ++v) {
    Status s = RunTx(writer_.get(), true, [&](Tx& tx) -> Status {
      RETURN_IF_ERROR(tx.Exec(kMigrations[v]));
      return tx.Exec("PRAGMA user_version=" + std::to_string(v + 1));
    });
    if (!s.ok()) return s.Wrap("migrate metadata schema to version " + std::to_string(v + 1));
    spdlog::info("metadata schema migrated to version {}", v + 1);
  }
  schema_version_ = LatestSchemaVersion();
  return Status::Ok();
}

Status Db::Update(const std::function<Status(Tx&)>& fn) {
  std::lock_guard lock(write_mu_);
  // A full disk names the database file and its file system (SQLITE_FULL says neither).
  return WithFilesystem(RunTx(writer_.get(), true, fn), path_);
}

Status Db::View(const std::function<Status(Tx&)>& fn) const {
  std::unique_ptr<Conn> conn;
  {
    std::lock_guard lock(pool_mu_);
    if (!readers_.empty()) {
      conn = std::move(readers_.back());
      readers_.pop_back();
    }
  }
  if (!conn) {
    ASSIGN_OR_RETURN(sqlite3 * db, OpenConnection(path_, false));
    conn = std::make_unique<Conn>(db);
  }
  Status s = RunTx(conn.get(), false, fn);
  std::lock_guard lock(pool_mu_);
  // Beyond 8 idle connections the extra one closes (its statements with it).
  if (readers_.size() < 8) readers_.push_back(std::move(conn));
  return s;
}

Result<std::optional<std::string>> Db::GetSetting(const std::string& key) const {
  std::optional<std::string> out;
  RETURN_IF_ERROR(View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT value FROM settings WHERE key=?"));
    st.Bind(1, key);
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) out = st.ColumnText(0);
    return Status::Ok();
  }));
  return out;
}

Result<std::string> Db::GetOrSetSetting(const std::string& key, const std::string& value) {
  std::string out;
  RETURN_IF_ERROR(Update([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt ins,
                     tx.Prepare("INSERT INTO settings(key, value) VALUES(?, ?) "
                                "ON CONFLICT(key) DO NOTHING"));
    ins.Bind(1, key).Bind(2, value);
    RETURN_IF_ERROR(ins.Exec());
    ASSIGN_OR_RETURN(Stmt sel, tx.Prepare("SELECT value FROM settings WHERE key=?"));
    sel.Bind(1, key);
    ASSIGN_OR_RETURN(bool row, sel.Step());
    if (!row) return Internal("setting " + key + " vanished");
    out = sel.ColumnText(0);
    return Status::Ok();
  }));
  return out;
}

Result<int64_t> Db::CountRowsForTest(std::string_view table) const {
  bool identifier = !table.empty() && std::all_of(table.begin(), table.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || c == '_';
  });
  if (!identifier) return std::unexpected(InvalidArgument("not a table name: " + Quote(table)));
  int64_t rows = 0;
  RETURN_IF_ERROR(View([&](Tx& tx) -> Status {
    ASSIGN_OR_RETURN(Stmt st, tx.Prepare("SELECT count(*) FROM " + std::string(table)));
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) rows = st.ColumnInt(0);
    return Status::Ok();
  }));
  return rows;
}

}  // namespace berth::metadata
