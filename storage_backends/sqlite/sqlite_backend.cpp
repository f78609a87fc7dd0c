#include "storage_backends/sqlite/sqlite_backend.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "core/error.hpp"

namespace tlm {

namespace {

constexpr int schema_version = 5;

// No secondary index on leases: each cost a quarter of the create rate
// (measured), and no query here needs one: the start-up load reads every
// row by id, and a `list` filtered by backend or tag pages along the
// primary key. Tags live in their JSON column only (since version 4).
// This is the current shape; `migrate` brings older databases to it.
const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases(
  id TEXT PRIMARY KEY,
  backend TEXT NOT NULL,
  backend_id TEXT NOT NULL,
  value TEXT NOT NULL,
  ttl_ms INTEGER NOT NULL,
  issued_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  renewable INTEGER NOT NULL,
  tags TEXT NOT NULL,
  meta TEXT NOT NULL,
  description TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'active',
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  scope TEXT NOT NULL DEFAULT '',
  last_access_ms INTEGER NOT NULL DEFAULT 0,
  row_id INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoke_jobs(
  id TEXT PRIMARY KEY,
  backend TEXT NOT NULL,
  tag TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  total INTEGER NOT NULL,
  state TEXT NOT NULL,
  finished_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

constexpr const char* lease_columns =
  "id, backend, backend_id, value, ttl_ms, issued_ms, expires_ms, "
  "renewable, tags, meta, description, state, attempts, last_error, scope, "
  "last_access_ms, row_id";

/// Makes a file we just created readable and writable by its owner only
/// (`open`'s mode is masked by the umask; this is not).
void private_file(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size == 0)
    ::fchmod(fd, S_IRUSR | S_IWUSR);
}

/// An exclusive lock on `<database>.lock`, held as long as the backend
/// lives, so that two processes never serve (and revoke) the same leases.
///
/// Why a file of its own and not a lock on the database: SQLite locks the
/// database with POSIX (fcntl) locks, and those belong to the process, not
/// to a descriptor: closing *any* descriptor of the file drops all of them
/// (the close() trap), and on NFS flock(2) is emulated with fcntl locks that
/// would clash with SQLite's byte ranges. A file SQLite never opens avoids
/// both. flock(2) belongs to our open descriptor alone and the kernel drops
/// it when the process dies, also on SIGKILL, so the file left behind is
/// harmless. `PRAGMA locking_mode=EXCLUSIVE` would also shut out the sqlite3
/// shell reading a live database, and refuse a second tlmd only after the
/// busy timeout, as "database is locked".
class lock_file {
public:
  lock_file() = default;
  lock_file(const lock_file&) = delete;
  lock_file& operator=(const lock_file&) = delete;

  ~lock_file() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  /// Takes the lock without waiting; the error names the database and the
  /// process holding it.
  caf::error acquire(const std::string& db_path) {
    auto path = db_path + ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0)
      return make_error(ec::storage_error, "cannot open the lock file '" + path
                                             + "': " + std::strerror(errno));
    private_file(fd_);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      auto reason = errno == EWOULDBLOCK
                      ? "in use by another process" + holder()
                      : std::string{"not lockable: "} + std::strerror(errno);
      return make_error(ec::storage_error, "the database '" + db_path + "' is "
                                             + reason + " (lock '" + path
                                             + "')");
    }
    // The pid is only a hint for the message above; the lock is the truth.
    auto pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0
        || ::pwrite(fd_, pid.data(), pid.size(), 0)
             != static_cast<ssize_t>(pid.size()))
      return make_error(ec::storage_error,
                        "cannot write the lock file '" + path + "'");
    return caf::none;
  }

private:
  std::string holder() const {
    char buf[24] = {};
    auto n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    std::string pid(buf, n > 0 ? static_cast<size_t>(n) : 0);
    pid.erase(pid.find_last_not_of("\n") + 1);
    return pid.empty() ? std::string{} : " (pid " + pid + ")";
  }

  int fd_ = -1;
};

/// One prepared statement; reset after each use so it can run again.
class statement {
public:
  statement() = default;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  ~statement() {
    sqlite3_finalize(stmt_);
  }

  bool prepare(sqlite3* db, const std::string& sql) {
    return sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                              &stmt_, nullptr)
           == SQLITE_OK;
  }

  statement& bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }

  statement& bind(int i, int64_t number) {
    sqlite3_bind_int64(stmt_, i, number);
    return *this;
  }

  /// Steps once: SQLITE_ROW, SQLITE_DONE or an error code.
  int step() {
    return sqlite3_step(stmt_);
  }

  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::string text(int col) const {
    auto p = sqlite3_column_text(stmt_, col);
    return p ? std::string(
             reinterpret_cast<const char*>(p),
             static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string{};
  }

  int64_t number(int col) const {
    return sqlite3_column_int64(stmt_, col);
  }

private:
  sqlite3_stmt* stmt_ = nullptr;
};

class sqlite_backend : public storage_backend {
public:
  caf::error open(const std::string& path) {
    // Never a folder: a mistyped path must not start an empty database
    // while the leases of the real one go unrevoked.
    std::error_code ignored;
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir, ignored))
      return make_error(ec::storage_error,
                        "cannot open the database '" + path + "': its folder '"
                          + dir.string()
                          + "' does not exist (tlmd creates no folders)");
    if (auto err = lock_.acquire(path))
      return err;
    if (auto err = create_if_missing(path))
      return err;
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                          | SQLITE_OPEN_NOMUTEX,
                        nullptr)
        != SQLITE_OK)
      return fail("cannot open SQLite database '" + path + "'");
    sqlite3_busy_timeout(db_, 5000);
    // Random lease ids insert all over the B-tree; rarer checkpoints batch
    // the copy back into the database file. A 32 MB page cache and no mmap
    // create as fast as 128 MB and a 1 GB map did (measured, 1M leases),
    // and leave the rest of the file to the kernel's page cache instead of
    // our resident memory.
    if (auto err = exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                        "PRAGMA cache_size=-32768; "
                        "PRAGMA wal_autocheckpoint=16384;"))
      return err;
    if (auto err = exec(schema_sql))
      return err;
    if (auto err = migrate())
      return err;
    return prepare_statements();
  }

  /// Creates the file with mode 0600 if it does not exist; notes whether
  /// the database is new.
  caf::error create_if_missing(const std::string& path) {
    // Checked under the lock, so no other tlmd creates it meanwhile. SQLite
    // takes an empty file for a new database too.
    std::error_code missing;
    auto size = std::filesystem::file_size(path, missing);
    created_ = missing || size == 0;
    // Token values live in it: readable by us alone, whatever the umask.
    // SQLite gives its WAL and shared-memory files the database's mode.
    if (missing) {
      auto fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                       0600);
      if (fd < 0)
        return make_error(ec::storage_error, "cannot create the database '"
                                               + path
                                               + "': " + std::strerror(errno));
      private_file(fd);
      ::close(fd); // before SQLite opens it, so no lock of its own is lost
    }
    return caf::none;
  }

  caf::error prepare_statements() {
    std::string cols = lease_columns;
    bool ok =
      begin_.prepare(db_, "BEGIN IMMEDIATE") && commit_.prepare(db_, "COMMIT")
      && rollback_.prepare(db_, "ROLLBACK")
      && insert_.prepare(db_, "INSERT INTO leases(" + cols
                                + ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                                  "ON CONFLICT(id) DO NOTHING")
      && update_.prepare(db_, "UPDATE leases SET backend=?2, backend_id=?3, "
                              "value=?4, ttl_ms=?5, issued_ms=?6, "
                              "expires_ms=?7, renewable=?8, tags=?9, "
                              "meta=?10, description=?11, state=?12, "
                              "attempts=?13, last_error=?14, scope=?15, "
                              "last_access_ms=?16, row_id=?17 "
                              "WHERE id=?1")
      && remove_.prepare(db_, "DELETE FROM leases WHERE id = ?")
      && save_job_.prepare(db_, "INSERT OR REPLACE INTO revoke_jobs("
                                "id, backend, tag, created_ms, total, "
                                "state, finished_ms) "
                                "VALUES(?,?,?,?,?,?,?)")
      && remove_job_.prepare(db_, "DELETE FROM revoke_jobs WHERE id = ?")
      && load_jobs_.prepare(db_, "SELECT id, backend, tag, created_ms, "
                                 "total, state, finished_ms FROM "
                                 "revoke_jobs ORDER BY created_ms")
      && get_.prepare(db_, "SELECT " + cols + " FROM leases WHERE id = ?")
      && load_.prepare(db_, "SELECT " + cols
                              + " FROM leases WHERE id > ? "
                                "ORDER BY id LIMIT ?")
      && list_.prepare(
        db_, "SELECT " + cols
               + " FROM leases WHERE id > ?1 AND ("
                 // The filter's windows (lease_filter::max_windows).
                 "(state = ?6 AND expires_ms BETWEEN ?7 AND ?8) "
                 "OR (state = ?9 AND expires_ms BETWEEN ?10 AND ?11) "
                 "OR (state = ?12 AND expires_ms BETWEEN ?13 AND ?14) "
                 "OR (state = ?15 AND expires_ms BETWEEN ?16 AND ?17)) "
                 "AND (?3 = '' OR backend = ?3) "
                 "AND (?4 = '' OR EXISTS (SELECT 1 FROM "
                 "json_each(leases.tags) WHERE value = ?4)) "
                 "ORDER BY id LIMIT ?5");
    if (!ok)
      return fail("cannot prepare SQLite statements");
    return caf::none;
  }

  bool blocking() const override {
    return true;
  }

  bool created_new() const override {
    return created_;
  }

  caf::error apply(const std::vector<storage_write>& batch) override {
    if (begin_.step() != SQLITE_DONE) {
      begin_.reset();
      return fail("cannot begin a SQLite transaction");
    }
    begin_.reset();
    for (auto& w : batch) {
      auto err = write(w);
      if (err) {
        rollback_.step();
        rollback_.reset();
        return err;
      }
    }
    auto rc = commit_.step();
    commit_.reset();
    if (rc != SQLITE_DONE) {
      rollback_.step();
      rollback_.reset();
      return fail("cannot commit to SQLite");
    }
    return caf::none;
  }

  caf::expected<lease> get(const std::string& id) override {
    get_.bind(1, id);
    auto rows = read_rows(get_);
    if (!rows)
      return std::move(rows.error());
    if (rows->empty())
      return make_error(ec::not_found,
                        "no stored lease has the id '" + id + "'");
    return std::move(rows->front());
  }

  // Positions are lease ids: the primary key orders the pages.
  caf::expected<lease_page> load(const std::string& after,
                                 uint32_t max) override {
    load_.bind(1, after).bind(2, static_cast<int64_t>(max));
    bool cut = false;
    auto rows = read_rows(load_, max_load_page_bytes, &cut);
    if (!rows)
      return std::move(rows.error());
    return load_page(std::move(*rows), max, cut);
  }

  caf::expected<std::vector<revoke_job>> load_jobs() override {
    std::vector<revoke_job> jobs;
    int rc;
    while ((rc = load_jobs_.step()) == SQLITE_ROW) {
      revoke_job job;
      job.id = load_jobs_.text(0);
      job.backend = load_jobs_.text(1);
      job.tag = load_jobs_.text(2);
      job.created_ms = load_jobs_.number(3);
      job.total = static_cast<uint64_t>(load_jobs_.number(4));
      if (!parse_job_state(load_jobs_.text(5), job.state))
        continue; // an unknown state: never written by this tlmd
      job.finished_ms = load_jobs_.number(6);
      jobs.push_back(std::move(job));
    }
    load_jobs_.reset();
    if (rc != SQLITE_DONE)
      return fail("cannot read revoke jobs");
    return jobs;
  }

  caf::expected<lease_page> list(const lease_filter& q) override {
    if (q.windows.size() > lease_filter::max_windows)
      return make_error(ec::storage_error,
                        "a list filter has too many state windows");
    // One row more than asked tells whether another page exists.
    list_.bind(1, q.after)
      .bind(3, q.backend)
      .bind(4, q.tag)
      .bind(5, static_cast<int64_t>(q.limit) + 1);
    static const std::string no_state; // matches no row
    for (size_t i = 0; i < lease_filter::max_windows; ++i) {
      auto first = static_cast<int>(6 + 3 * i);
      auto* w = i < q.windows.size() ? &q.windows[i] : nullptr;
      list_.bind(first, w ? w->state : no_state)
        .bind(first + 1, w ? w->min_expires_ms : int64_t{0})
        .bind(first + 2, w ? w->max_expires_ms : int64_t{0});
    }
    bool cut = false;
    auto rows = read_rows(list_, max_list_page_bytes, &cut);
    if (!rows)
      return std::move(rows.error());
    return list_page(std::move(*rows), q.limit, cut);
  }

private:
  caf::error exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string text = msg ? msg : "unknown error";
      sqlite3_free(msg);
      return make_error(ec::storage_error, "SQLite failed: " + text);
    }
    return caf::none;
  }

  caf::error migrate() {
    statement read;
    if (!read.prepare(db_, "SELECT max(version) FROM schema_version"))
      return fail("cannot read the schema version");
    int64_t found = read.step() == SQLITE_ROW ? read.number(0) : 0;
    read.reset(); // a statement still running would lock the tables
    if (found > schema_version)
      return make_error(ec::storage_error,
                        "the database has schema version "
                          + std::to_string(found) + ", newer than this tlmd ("
                          + std::to_string(schema_version) + ")");
    if (found == 0) // new: schema_sql made the current shape
      return exec(("INSERT INTO schema_version VALUES("
                   + std::to_string(schema_version) + ")")
                    .c_str());
    if (found < 2 && !has_column("leases", "last_error"))
      // v2: the backend's reason for a failing revocation
      if (auto err = exec("ALTER TABLE leases ADD COLUMN last_error "
                          "TEXT NOT NULL DEFAULT ''"))
        return err;
    // v3: the revoke_jobs table, made by schema_sql. v4: the column
    // next_attempt_ms was never used, and tags were kept twice (their JSON
    // column and a lease_tags table); the column stays, every lease keeps
    // its tags.
    if (found < 4 && has_column("leases", "next_attempt_ms"))
      if (auto err = exec("ALTER TABLE leases DROP COLUMN next_attempt_ms"))
        return err;
    if (found < 4)
      if (auto err = exec("BEGIN; DROP TABLE IF EXISTS lease_tags; UPDATE "
                          "schema_version SET version = 4; COMMIT;"))
        return err;
    // v5 (issue 15): scope, last access and row id; a kept lease's row id
    // follows its issue time, as a new one's does.
    if (found < 5 && !has_column("leases", "row_id"))
      if (auto err = exec(
            "BEGIN; ALTER TABLE leases ADD COLUMN scope TEXT NOT NULL "
            "DEFAULT ''; ALTER TABLE leases ADD COLUMN last_access_ms "
            "INTEGER NOT NULL DEFAULT 0; ALTER TABLE leases ADD COLUMN "
            "row_id INTEGER NOT NULL DEFAULT 0; UPDATE leases SET "
            "row_id = issued_ms * 1000; COMMIT;"))
        return err;
    if (found < 5)
      return exec("UPDATE schema_version SET version = 5");
    return caf::none;
  }

  bool has_column(const std::string& table, const std::string& column) {
    statement info;
    if (!info.prepare(db_, "SELECT 1 FROM pragma_table_info('" + table
                             + "') WHERE name = ?"))
      return false;
    info.bind(1, column);
    bool found = info.step() == SQLITE_ROW;
    info.reset();
    return found;
  }

  caf::error fail(const std::string& what) {
    return make_error(ec::storage_error,
                      what + ": "
                        + (db_ ? sqlite3_errmsg(db_) : "no database"));
  }

  caf::error step_done(statement& s, const char* what) {
    auto rc = s.step();
    s.reset();
    return rc == SQLITE_DONE ? caf::none : fail(what);
  }

  caf::error write(const storage_write& w) {
    switch (w.kind) {
      case storage_write::save: return save(w.record);
      case storage_write::remove: return remove(w.record.id);
      case storage_write::save_job:
        save_job_.bind(1, w.job.id)
          .bind(2, w.job.backend)
          .bind(3, w.job.tag)
          .bind(4, w.job.created_ms)
          .bind(5, static_cast<int64_t>(w.job.total))
          .bind(6, to_string(w.job.state))
          .bind(7, w.job.finished_ms);
        return step_done(save_job_, "cannot save a revoke job");
      case storage_write::remove_job:
        remove_job_.bind(1, w.job.id);
        return step_done(remove_job_, "cannot remove a revoke job");
    }
    return fail("unknown storage write");
  }

  // A new lease is one insert; only a lease that exists already (renew,
  // exchange) pays for the update.
  caf::error save(const lease& x) {
    auto tags = nlohmann::json(x.tags).dump();
    bind_lease(insert_, x, tags);
    if (auto err = step_done(insert_, "cannot save a lease"))
      return err;
    if (sqlite3_changes(db_) == 0) {
      bind_lease(update_, x, tags);
      return step_done(update_, "cannot update a lease");
    }
    return caf::none;
  }

  static void bind_lease(statement& s, const lease& x,
                         const std::string& tags) {
    s.bind(1, x.id)
      .bind(2, x.backend)
      .bind(3, x.backend_id)
      .bind(4, x.value)
      .bind(5, x.ttl_ms)
      .bind(6, x.issued_ms)
      .bind(7, x.expires_ms)
      .bind(8, int64_t{x.renewable})
      .bind(9, tags)
      .bind(10, x.meta)
      .bind(11, x.description)
      .bind(12, x.state)
      .bind(13, static_cast<int64_t>(x.attempts))
      .bind(14, x.last_error)
      .bind(15, x.scope)
      .bind(16, x.last_access_ms)
      .bind(17, x.row_id);
  }

  caf::error remove(const std::string& id) {
    remove_.bind(1, id);
    return step_done(remove_, "cannot remove a lease");
  }

  /// The rows of `s`, stopping before the one that would pass `max_bytes`
  /// (then `*cut` is set), though never before the first.
  caf::expected<std::vector<lease>>
  read_rows(statement& s, size_t max_bytes = SIZE_MAX, bool* cut = nullptr) {
    std::vector<lease> rows;
    size_t bytes = 0;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      lease x;
      x.id = s.text(0);
      x.backend = s.text(1);
      x.backend_id = s.text(2);
      x.value = s.text(3);
      x.ttl_ms = s.number(4);
      x.issued_ms = s.number(5);
      x.expires_ms = s.number(6);
      x.renewable = s.number(7) != 0;
      auto tags = nlohmann::json::parse(s.text(8), nullptr, false);
      if (tags.is_array())
        for (auto& t : tags)
          if (t.is_string())
            x.tags.push_back(t.get<std::string>());
      x.meta = s.text(9);
      x.description = s.text(10);
      x.state = s.text(11);
      x.attempts = static_cast<uint32_t>(s.number(12));
      x.last_error = s.text(13);
      x.scope = s.text(14);
      x.last_access_ms = s.number(15);
      x.row_id = s.number(16);
      bytes += page_bytes(x);
      if (bytes > max_bytes && !rows.empty()) {
        *cut = true;
        rc = SQLITE_DONE;
        break;
      }
      rows.push_back(std::move(x));
    }
    s.reset();
    if (rc != SQLITE_DONE)
      return fail("cannot read leases");
    return rows;
  }

  /// Declared first, so it is released after the connection closes.
  lock_file lock_;
  bool created_ = false;
  /// Declared before the statements, so it closes after they finalize.
  struct connection {
    sqlite3* handle = nullptr;
    ~connection() {
      sqlite3_close(handle);
    }
  } conn_;
  sqlite3*& db_ = conn_.handle;
  statement begin_, commit_, rollback_, insert_, update_, remove_, get_, load_,
    list_, save_job_, remove_job_, load_jobs_;
};

} // namespace

caf::expected<std::unique_ptr<storage_backend>>
make_sqlite_backend(const std::string& path) {
  auto backend = std::make_unique<sqlite_backend>();
  if (auto err = backend->open(path))
    return err;
  return std::unique_ptr<storage_backend>{std::move(backend)};
}

} // namespace tlm
