#include "storage_backends/postgres/postgres_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include <poll.h>

#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

/// The version of the PostgreSQL schema (its own numbering, not SQLite's).
constexpr int schema_version = 3;

/// A transaction lock on this key (it spells "tlmd", plus one) orders the
/// schema work of instances that start at once.
constexpr int64_t schema_lock_key = 0x746c6d64 + 1;

// The documented bound on a call while PostgreSQL is gone or hangs: a
// connect gives up after connect_timeout (per host), the server ends a
// statement after statement_timeout, and we stop waiting for any answer
// after answer_timeout (a stopped server process or a frozen proxy still
// ACKs our packets, so no TCP timeout would fire; keepalives and
// tcp_user_timeout notice a dead peer sooner).
constexpr const char* connect_timeout_s = "5";
constexpr const char* statement_timeout_ms = "10000";
constexpr auto answer_timeout = std::chrono::seconds{12};

// The SQLite shape (version 4 there): tags as JSONB, ids compared bytewise
// (COLLATE "C"), so pages follow the order of the other stores whatever the
// database's locale. Each step brings version i to i+1, in place.
const std::vector<const char*> schema_steps = {
  R"sql(
CREATE TABLE leases(
  id TEXT COLLATE "C" PRIMARY KEY,
  backend TEXT NOT NULL,
  backend_id TEXT NOT NULL,
  value TEXT NOT NULL,
  ttl_ms BIGINT NOT NULL,
  issued_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  renewable BOOLEAN NOT NULL,
  tags JSONB NOT NULL,
  meta TEXT NOT NULL,
  description TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'active',
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '');
CREATE TABLE revoke_jobs(
  id TEXT COLLATE "C" PRIMARY KEY,
  backend TEXT NOT NULL,
  tag TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  total BIGINT NOT NULL,
  state TEXT NOT NULL,
  finished_ms BIGINT NOT NULL);
)sql",
  // Several instances: who works on what (an intent's creator, a claimed
  // lease's revoker, a job's runner; no one for an active lease), who is
  // alive, and the indexes of the claims.
  R"sql(
ALTER TABLE leases ADD COLUMN owner TEXT COLLATE "C";
ALTER TABLE revoke_jobs ADD COLUMN owner TEXT COLLATE "C";
CREATE TABLE instances(
  id TEXT COLLATE "C" PRIMARY KEY,
  seen TIMESTAMPTZ NOT NULL);
CREATE INDEX leases_due ON leases(expires_ms) WHERE state = 'active';
CREATE INDEX leases_claimed ON leases(expires_ms) WHERE state <> 'active';
)sql",
  // Issue 15: a lease's scope, last access and row id (for paging by
  // creation); a kept lease's row id follows its issue time, as new ones do.
  R"sql(
ALTER TABLE leases ADD COLUMN scope TEXT NOT NULL DEFAULT '',
  ADD COLUMN last_access_ms BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN row_id BIGINT NOT NULL DEFAULT 0;
UPDATE leases SET row_id = issued_ms * 1000;
)sql",
};

constexpr const char* lease_columns =
  "id, backend, backend_id, value, ttl_ms, issued_ms, expires_ms, "
  "renewable, tags, meta, description, state, attempts, last_error, scope, "
  "last_access_ms, row_id";

constexpr const char* job_columns =
  "id, backend, tag, created_ms, total, state, finished_ms";

/// Instances heard of within $N milliseconds: the others' claims are free.
std::string alive(int n) {
  return "(SELECT id FROM instances WHERE seen > now() - make_interval(secs "
         "=> $"
         + std::to_string(n) + "::bigint / 1000.0))";
}

/// The statements of shared use (several instances), by name. `$me` is
/// the last parameter of each where it appears.
std::vector<std::pair<const char*, std::string>> shared_statements() {
  static const std::string cols = lease_columns;
  auto returning = " RETURNING " + cols;
  return {
    {"get_many", "SELECT " + cols + " FROM leases WHERE id = ANY($1::text[])"},
    {"heartbeat", "INSERT INTO instances(id, seen) VALUES($1, now()) "
                  "ON CONFLICT(id) DO UPDATE SET seen = now()"},
    {"forget_instances", "DELETE FROM instances WHERE id = $1 OR seen < "
                         "now() - interval '1 day'"},
    // Ours from a claim whose answer was lost, too: the ids are ours.
    {"claim_due", "UPDATE leases SET state = 'revoking', owner = $3 "
                  "WHERE id = ANY($1::text[]) AND ((state = 'active' AND "
                  "expires_ms <= $2) OR (state = 'revoking' AND owner = $3))"
                    + returning},
    {"claim_live", "UPDATE leases SET state = 'revoking', owner = $3 "
                   "WHERE id = ANY($1::text[]) AND state = 'active' AND "
                   "expires_ms > $2"
                     + returning},
    {"claim_matching",
     "UPDATE leases SET state = CASE state WHEN 'active' THEN 'revoking' "
     "ELSE state END, owner = $6 WHERE ($1 = '' OR backend = $1) "
     "AND ($2 = '' OR tags ? $2) AND ((state = 'active' AND issued_ms <= $3 "
     "AND expires_ms > $4) OR (state IN ('revoking', 'irrevocable') AND "
     "(owner IS NULL OR owner = $6 OR owner NOT IN "
       + alive(5) + ")))" + returning},
    {"claim_jobs", "UPDATE revoke_jobs SET owner = $2 WHERE state = 'running' "
                   "AND (owner IS NULL OR owner NOT IN "
                     + alive(1) + ") RETURNING " + job_columns},
    // SKIP LOCKED: instances polling at once take different leases.
    {"claim_due_any",
     "UPDATE leases SET state = 'revoking', owner = $3 WHERE id IN (SELECT "
     "id FROM leases WHERE state = 'active' AND expires_ms <= $1 ORDER BY "
     "expires_ms LIMIT $2 FOR UPDATE SKIP LOCKED)"
       + returning},
    {"claim_orphaned", "UPDATE leases SET owner = $3 WHERE id IN (SELECT id "
                       "FROM leases WHERE state <> 'active' AND (owner IS "
                       "NULL OR owner NOT IN "
                         + alive(1)
                         + ") ORDER BY expires_ms LIMIT $2 FOR UPDATE SKIP "
                           "LOCKED)"
                         + returning},
    {"renew_live", "UPDATE leases SET ttl_ms = $2, expires_ms = $3 WHERE "
                   "id = $1 AND state = 'active' AND expires_ms > $4"
                     + returning},
    // Both SET expressions read the old ttl_ms, as PostgreSQL defines.
    {"swap_live", "UPDATE leases SET value = $3, meta = $4, last_access_ms = "
                  "$5, expires_ms = "
                  "LEAST($5 + ttl_ms, issued_ms + $6), ttl_ms = LEAST($5 + "
                  "ttl_ms, issued_ms + $6) - $5 WHERE id = $1 AND value = $2 "
                  "AND state = 'active' AND expires_ms > $5"
                    + returning},
    {"count", "SELECT backend, count(*) FILTER (WHERE state = 'active' AND "
              "expires_ms > $1), count(*) FILTER (WHERE state = 'revoking' "
              "AND last_error <> ''), count(*) FILTER (WHERE state = "
              "'irrevocable') FROM leases GROUP BY backend ORDER BY backend"},
  };
}

/// The prepared statements, by name.
const std::vector<std::pair<const char*, std::string>>& statements() {
  static const std::string cols = lease_columns;
  static const std::vector<std::pair<const char*, std::string>> all = [] {
    std::vector<std::pair<const char*, std::string>> list = {
      // An active lease has no owner; any other state is its writer's.
      {"save", "INSERT INTO leases(" + cols
                 + ", owner) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,"
                   "$14,$15,$16,$17, CASE $12 WHEN 'active' THEN NULL ELSE "
                   "$18 END) "
                   "ON CONFLICT(id) DO UPDATE SET backend=$2, backend_id=$3, "
                   "value=$4, ttl_ms=$5, issued_ms=$6, expires_ms=$7, "
                   "renewable=$8, tags=$9, meta=$10, description=$11, "
                   "state=$12, attempts=$13, last_error=$14, scope=$15, "
                   "last_access_ms=$16, row_id=$17, owner=EXCLUDED.owner"},
      {"remove", "DELETE FROM leases WHERE id = $1"},
      {"save_job",
       "INSERT INTO revoke_jobs(id, backend, tag, created_ms, "
       "total, state, finished_ms, owner) VALUES($1,$2,$3,$4,$5,$6,"
       "$7,$8) ON CONFLICT(id) DO UPDATE SET backend=$2, tag=$3, "
       "created_ms=$4, total=$5, state=$6, finished_ms=$7, owner=$8"},
      {"remove_job", "DELETE FROM revoke_jobs WHERE id = $1"},
      {"load_jobs", std::string{"SELECT "} + job_columns
                      + " FROM revoke_jobs ORDER BY created_ms, id"},
      {"get", "SELECT " + cols + " FROM leases WHERE id = $1"},
      {"load", "SELECT " + cols
                 + " FROM leases WHERE id > $1 ORDER BY id "
                   "LIMIT $2"},
      {"list", "SELECT " + cols
                 + " FROM leases WHERE id > $1 AND ("
                   // The filter's windows (lease_filter::max_windows).
                   "(state = $5 AND expires_ms BETWEEN $6 AND $7) "
                   "OR (state = $8 AND expires_ms BETWEEN $9 AND $10) "
                   "OR (state = $11 AND expires_ms BETWEEN $12 AND $13) "
                   "OR (state = $14 AND expires_ms BETWEEN $15 AND $16)) "
                   "AND ($2 = '' OR backend = $2) "
                   "AND ($3 = '' OR tags ? $3) "
                   "ORDER BY id LIMIT $4"},
    };
    for (auto& st : shared_statements())
      list.push_back(std::move(st));
    return list;
  }();
  return all;
}

/// A result that clears itself.
struct result {
  PGresult* res = nullptr;
  explicit result(PGresult* r = nullptr) : res(r) {
  }
  result(const result&) = delete;
  result& operator=(const result&) = delete;
  result(result&& other) noexcept : res(other.res) {
    other.res = nullptr;
  }
  result& operator=(result&& other) noexcept {
    std::swap(res, other.res);
    return *this;
  }
  ~result() {
    PQclear(res);
  }
  ExecStatusType status() const {
    return res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  }
  bool ok() const {
    auto s = status();
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK
           || s == PGRES_SINGLE_TUPLE;
  }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(res, row, col),
                       static_cast<size_t>(PQgetlength(res, row, col)));
  }
  int64_t number(int row, int col) const {
    int64_t x = 0;
    auto p = PQgetvalue(res, row, col);
    std::from_chars(p, p + PQgetlength(res, row, col), x);
    return x;
  }
};

/// Parameters as text (libpq's text format): strings kept alive here.
class params {
public:
  params& add(std::string text) {
    values_.push_back(std::move(text));
    return *this;
  }
  params& add(int64_t number) {
    return add(std::to_string(number));
  }
  int size() const {
    return static_cast<int>(values_.size());
  }
  const char* const* data() {
    ptrs_.clear();
    for (auto& v : values_)
      ptrs_.push_back(v.c_str());
    return ptrs_.data();
  }

private:
  std::vector<std::string> values_;
  std::vector<const char*> ptrs_;
};

/// The parameters of the `save` statement.
params lease_params(const lease& x) {
  params p;
  p.add(x.id)
    .add(x.backend)
    .add(x.backend_id)
    .add(x.value)
    .add(x.ttl_ms)
    .add(x.issued_ms)
    .add(x.expires_ms)
    .add(std::string{x.renewable ? "t" : "f"})
    .add(nlohmann::json(x.tags).dump())
    .add(x.meta)
    .add(x.description)
    .add(x.state)
    .add(static_cast<int64_t>(x.attempts))
    .add(x.last_error)
    .add(x.scope)
    .add(x.last_access_ms)
    .add(x.row_id);
  return p;
}

lease lease_of(const result& r, int row) {
  lease x;
  x.id = r.text(row, 0);
  x.backend = r.text(row, 1);
  x.backend_id = r.text(row, 2);
  x.value = r.text(row, 3);
  x.ttl_ms = r.number(row, 4);
  x.issued_ms = r.number(row, 5);
  x.expires_ms = r.number(row, 6);
  x.renewable = r.text(row, 7) == "t";
  auto tags = nlohmann::json::parse(r.text(row, 8), nullptr, false);
  if (tags.is_array())
    for (auto& t : tags)
      if (t.is_string())
        x.tags.push_back(t.get<std::string>());
  x.meta = r.text(row, 9);
  x.description = r.text(row, 10);
  x.state = r.text(row, 11);
  x.attempts = static_cast<uint32_t>(r.number(row, 12));
  x.last_error = r.text(row, 13);
  x.scope = r.text(row, 14);
  x.last_access_ms = r.number(row, 15);
  x.row_id = r.number(row, 16);
  return x;
}

/// libpq's message, one line: it names hosts and users, never a password.
std::string message_of(PGconn* conn) {
  std::string text = conn ? PQerrorMessage(conn) : "no connection";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  for (auto& c : text)
    if (c == '\n' || c == '\t')
      c = ' ';
  return text.empty() ? "unknown error" : text;
}

/// libpq passes text parameters as C strings: a NUL would cut them short.
bool has_nul(const storage_write& w) {
  auto nul = [](const std::string& s) {
    return s.find('\0') != std::string::npos;
  };
  auto& x = w.record;
  bool tags = std::any_of(x.tags.begin(), x.tags.end(), nul);
  return tags || nul(x.id) || nul(x.backend) || nul(x.backend_id)
         || nul(x.value) || nul(x.meta) || nul(x.description) || nul(x.state)
         || nul(x.last_error) || nul(x.scope) || nul(w.job.id)
         || nul(w.job.backend) || nul(w.job.tag);
}

/// The first line of a password file (as the cloud backends read theirs),
/// or an error naming the file.
caf::expected<std::string> read_password(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(ec::storage_error,
                      "cannot read the storage password file '" + path + "'");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.pop_back();
  if (line.empty())
    return make_error(ec::storage_error, "the storage password file '" + path
                                           + "' has an empty first line");
  return line;
}

class postgres_backend : public storage_backend, public shared_storage {
public:
  ~postgres_backend() override {
    // Gone for good: the others may take our claims at once.
    if (conn_ && !broken_) {
      deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds{2};
      params p;
      p.add(instance_);
      exec_prepared("forget_instances", p);
    }
    close();
  }

  shared_storage* shared() override {
    return this;
  }

  const std::string& instance() const override {
    return instance_;
  }

  caf::expected<std::vector<lease>>
  get_many(const std::vector<std::string>& ids) override {
    params p;
    p.add(text_array(ids));
    return claim("get_many", p);
  }

  caf::expected<std::vector<lease>>
  claim_due(const std::vector<std::string>& ids, int64_t now_ms) override {
    params p;
    p.add(text_array(ids)).add(now_ms).add(instance_);
    return claim("claim_due", p);
  }

  caf::expected<std::vector<lease>>
  claim_live(const std::vector<std::string>& ids, int64_t now_ms) override {
    params p;
    p.add(text_array(ids)).add(now_ms).add(instance_);
    return claim("claim_live", p);
  }

  caf::expected<std::vector<lease>>
  claim_matching(const revoke_job& job, const orphan_query& q) override {
    params p;
    p.add(job.backend)
      .add(job.tag)
      .add(job.created_ms)
      .add(q.now_ms)
      .add(q.dead_after_ms)
      .add(instance_);
    return claim("claim_matching", p);
  }

  caf::expected<orphan_work> claim_orphans(const orphan_query& q) override {
    if (auto err = ensure_connected())
      return err;
    if (auto err = heartbeat())
      return check_connection(std::move(err));
    orphan_work work;
    auto jobs = q.take_dead ? claim_jobs(q.dead_after_ms)
                            : std::vector<revoke_job>{};
    if (!jobs)
      return std::move(jobs.error());
    for (auto& job : *jobs) {
      // The job claimed every live lease it covers when it began: what is
      // left of it is what its dead runner had claimed, never a live one.
      auto rest = job;
      rest.created_ms = std::numeric_limits<int64_t>::min();
      auto covered = claim_matching(rest, q);
      if (!covered)
        return std::move(covered.error());
      append(work.leases, std::move(*covered));
    }
    work.jobs = std::move(*jobs);
    params due;
    due.add(q.now_ms).add(static_cast<int64_t>(q.max)).add(instance_);
    auto found = claim("claim_due_any", due);
    if (!found)
      return std::move(found.error());
    append(work.leases, std::move(*found));
    if (!q.take_dead)
      return work;
    params orphaned;
    orphaned.add(q.dead_after_ms)
      .add(static_cast<int64_t>(q.max))
      .add(instance_);
    found = claim("claim_orphaned", orphaned);
    if (!found)
      return std::move(found.error());
    append(work.leases, std::move(*found));
    return work;
  }

  caf::expected<lease> renew_live(const live_update& u) override {
    params p;
    p.add(u.id).add(u.ttl_ms).add(u.expires_ms).add(u.now_ms);
    return one_lease(claim("renew_live", p), u.id);
  }

  caf::expected<lease> swap_live(const live_update& u) override {
    params p;
    p.add(u.id)
      .add(u.old_value)
      .add(u.new_value)
      .add(u.meta)
      .add(u.now_ms)
      .add(u.max_ttl_ms);
    auto swapped = claim("swap_live", p);
    if (swapped && swapped->empty())
      return make_error(ec::invalid_token,
                        "the token is not a live one-time token");
    return one_lease(std::move(swapped), u.id);
  }

  caf::expected<std::vector<stored_count>> count(int64_t now_ms) override {
    if (auto err = ensure_connected())
      return err;
    params p;
    p.add(now_ms);
    auto r = exec_prepared("count", p);
    if (!r.ok())
      return check_connection(fail("cannot count leases"));
    std::vector<stored_count> counts;
    for (int i = 0; i < PQntuples(r.res); ++i)
      counts.push_back({r.text(i, 0), static_cast<uint64_t>(r.number(i, 1)),
                        static_cast<uint64_t>(r.number(i, 2)),
                        static_cast<uint64_t>(r.number(i, 3))});
    return counts;
  }

  caf::error open(const std::string& conninfo,
                  const std::string& password_file) {
    if (auto err = parse(conninfo))
      return err;
    if (!password_file.empty()) {
      auto pw = read_password(password_file);
      if (!pw)
        return pw.error();
      password_ = std::move(*pw);
    }
    return connect();
  }

  bool blocking() const override {
    return true;
  }

  bool created_new() const override {
    return created_;
  }

  caf::error apply(const std::vector<storage_write>& batch) override {
    if (auto err = ensure_connected())
      return err;
    return check_connection(pipeline(batch));
  }

  caf::expected<lease> get(const std::string& id) override {
    params p;
    p.add(id);
    bool cut = false;
    auto rows = query_leases("get", p, SIZE_MAX, cut);
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
    params p;
    p.add(after).add(static_cast<int64_t>(max));
    bool cut = false;
    auto rows = query_leases("load", p, max_load_page_bytes, cut);
    if (!rows)
      return std::move(rows.error());
    return load_page(std::move(*rows), max, cut);
  }

  caf::expected<std::vector<revoke_job>> load_jobs() override {
    if (auto err = ensure_connected())
      return err;
    params p;
    return read_jobs("load_jobs", p);
  }

  /// The jobs a prepared statement returns.
  caf::expected<std::vector<revoke_job>> read_jobs(const char* name,
                                                   params& p) {
    auto r = exec_prepared(name, p);
    if (!r.ok())
      return check_connection(fail("cannot read revoke jobs"));
    std::vector<revoke_job> jobs;
    for (int i = 0; i < PQntuples(r.res); ++i) {
      revoke_job job;
      job.id = r.text(i, 0);
      job.backend = r.text(i, 1);
      job.tag = r.text(i, 2);
      job.created_ms = r.number(i, 3);
      job.total = static_cast<uint64_t>(r.number(i, 4));
      if (!parse_job_state(r.text(i, 5), job.state))
        continue; // an unknown state: never written by this tlmd
      job.finished_ms = r.number(i, 6);
      jobs.push_back(std::move(job));
    }
    return jobs;
  }

  caf::expected<lease_page> list(const lease_filter& q) override {
    if (q.windows.size() > lease_filter::max_windows)
      return make_error(ec::storage_error,
                        "a list filter has too many state windows");
    // One row more than asked tells whether another page exists.
    params p;
    p.add(q.after).add(q.backend).add(q.tag).add(static_cast<int64_t>(q.limit)
                                                 + 1);
    static const std::string no_state; // matches no row
    for (size_t i = 0; i < lease_filter::max_windows; ++i) {
      auto* w = i < q.windows.size() ? &q.windows[i] : nullptr;
      p.add(w ? w->state : no_state)
        .add(w ? w->min_expires_ms : int64_t{0})
        .add(w ? w->max_expires_ms : int64_t{0});
    }
    bool cut = false;
    auto rows = query_leases("list", p, max_list_page_bytes, cut);
    if (!rows)
      return std::move(rows.error());
    return list_page(std::move(*rows), q.limit, cut);
  }

private:
  /// Checks the connection string without connecting; keeps the database's
  /// name for messages, and refuses a password in it.
  caf::error parse(const std::string& conninfo) {
    char* errmsg = nullptr;
    auto* opts = PQconninfoParse(conninfo.c_str(), &errmsg);
    // libpq's reason may quote the string, password and all: not shown.
    PQfreemem(errmsg);
    if (!opts)
      return make_error(ec::storage_error,
                        "the storage is not a valid PostgreSQL connection "
                        "string (postgresql://USER@HOST:PORT/DBNAME or "
                        "postgres:KEY=VALUE ...)");
    bool has_password = false;
    std::string db, host, port;
    for (auto* o = opts; o->keyword; ++o) {
      std::string key = o->keyword;
      std::string val = o->val ? o->val : "";
      has_password |= key == "password" && !val.empty();
      if (key == "dbname")
        db = val;
      else if (key == "host")
        host = val;
      else if (key == "port")
        port = val;
    }
    PQconninfoFree(opts);
    if (has_password)
      return make_error(ec::storage_error,
                        "the storage connection string contains a password: "
                        "put it in a file named by storage_password_file "
                        "(--storage-password-file) or PGPASSFILE instead");
    conninfo_ = conninfo;
    where_ = "'" + (db.empty() ? std::string{"(default)"} : db) + "' on "
             + (host.empty() ? std::string{"(default host)"} : host)
             + (port.empty() ? std::string{} : ":" + port);
    return caf::none;
  }

  /// Our defaults first, so the connection string can override them.
  PGconn* start_connection() const {
    std::vector<const char*> keys = {
      "connect_timeout",           "keepalives",
      "keepalives_idle",           "keepalives_interval",
      "keepalives_count",          "tcp_user_timeout",
      "fallback_application_name", "dbname"};
    std::vector<const char*> vals = {
      connect_timeout_s, "1", "5", "1", "3", statement_timeout_ms, "tlmd",
      conninfo_.c_str()};
    if (!password_.empty()) {
      keys.push_back("password");
      vals.push_back(password_.c_str());
    }
    keys.push_back(nullptr);
    vals.push_back(nullptr);
    return PQconnectdbParams(keys.data(), vals.data(), 1);
  }

  caf::error connect() {
    close();
    conn_ = start_connection();
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
      auto err = make_error(ec::storage_error,
                            "cannot connect to the PostgreSQL database "
                              + where_ + ": " + message_of(conn_));
      close();
      return err;
    }
    // Server notices ("already exists, skipping") are not ours to print.
    PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
    // Sends never block either: every wait is `wait_ready`'s, bounded.
    PQsetnonblocking(conn_, 1);
    deadline_ = std::chrono::steady_clock::now() + answer_timeout;
    where_ = "'" + std::string{PQdb(conn_)} + "' on " + PQhost(conn_) + ":"
             + PQport(conn_);
    // The server's keepalives end our session soon after a network loss,
    // so that it does not hold row locks for hours.
    auto err = exec(std::string{"SET statement_timeout = "}
                    + statement_timeout_ms
                    + "; SET tcp_keepalives_idle = 5; "
                      "SET tcp_keepalives_interval = 1; "
                      "SET tcp_keepalives_count = 3");
    if (!err)
      err = create_schema();
    if (!err)
      err = prepare_statements();
    if (!err)
      err = heartbeat();
    if (err)
      close();
    return err;
  }

  /// Creates or upgrades the schema in one transaction, under a lock that
  /// makes a second process starting at once wait and then find it made.
  caf::error create_schema() {
    if (auto err = exec("BEGIN"))
      return err;
    auto err = exec("SELECT pg_advisory_xact_lock("
                    + std::to_string(schema_lock_key)
                    + "); CREATE TABLE IF NOT EXISTS "
                      "schema_version(version INTEGER NOT NULL)");
    if (!err)
      err = migrate();
    if (!err)
      err = exec("COMMIT");
    if (err)
      exec("ROLLBACK");
    return err;
  }

  caf::error migrate() {
    auto r = query("SELECT max(version) FROM schema_version");
    if (!r.ok() || PQntuples(r.res) != 1)
      return fail("cannot read the schema version");
    int64_t found = PQgetisnull(r.res, 0, 0) ? 0 : r.number(0, 0);
    if (found > schema_version)
      return make_error(ec::storage_error,
                        "the PostgreSQL database " + where_
                          + " has schema version " + std::to_string(found)
                          + ", newer than this tlmd ("
                          + std::to_string(schema_version) + ")");
    created_ = found == 0;
    for (auto v = found; v < schema_version; ++v)
      if (auto err = exec(schema_steps[static_cast<size_t>(v)]))
        return err;
    if (found == schema_version)
      return caf::none;
    return exec("DELETE FROM schema_version; INSERT INTO schema_version "
                "VALUES("
                + std::to_string(schema_version) + ")");
  }

  caf::error prepare_statements() {
    for (auto& [name, sql] : statements()) {
      auto r = last_result(PQsendPrepare(conn_, name, sql.c_str(), 0, nullptr));
      if (!r.ok())
        return fail(std::string{"cannot prepare the statement "} + name);
    }
    return caf::none;
  }

  /// Starts a call: its deadline, and a connection (a new one after a
  /// failure).
  caf::error ensure_connected() {
    deadline_ = std::chrono::steady_clock::now() + answer_timeout;
    if (conn_ && !broken_ && PQstatus(conn_) == CONNECTION_OK)
      return caf::none;
    return connect();
  }

  /// Drops a broken connection, so that the next call connects anew.
  template <class T>
  T check_connection(T outcome) {
    if (conn_ && (broken_ || PQstatus(conn_) != CONNECTION_OK))
      close();
    return outcome;
  }

  void close() {
    PQfinish(conn_);
    conn_ = nullptr;
    broken_ = false;
  }

  /// Waits, at most until the deadline, until libpq has sent everything
  /// and can hand out the next result without blocking. False when the
  /// connection failed or the deadline passed: then it is `broken_`.
  bool wait_ready() {
    while (!broken_) {
      auto flushed = PQflush(conn_);
      if (flushed < 0)
        break;
      if (flushed == 0 && !PQisBusy(conn_))
        return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline_ - std::chrono::steady_clock::now())
                    .count();
      if (left <= 0) {
        timed_out_ = true;
        break;
      }
      pollfd pfd{PQsocket(conn_),
                 static_cast<short>(POLLIN | (flushed ? POLLOUT : 0)), 0};
      auto rc = ::poll(&pfd, 1, static_cast<int>(left));
      if (rc < 0 && errno != EINTR)
        break;
      if (rc > 0 && (pfd.revents & ~POLLOUT) && !PQconsumeInput(conn_))
        break;
    }
    broken_ = true;
    return false;
  }

  /// The next result of what was sent, or nullptr at its end (and when
  /// `wait_ready` failed).
  PGresult* next_result() {
    return wait_ready() ? PQgetResult(conn_) : nullptr;
  }

  /// Every result of what was sent (`sent`: the send succeeded); the last
  /// one, as PQexec returns it.
  result last_result(int sent) {
    if (!sent) {
      broken_ = PQstatus(conn_) != CONNECTION_OK;
      return result{};
    }
    result last;
    while (auto* r = next_result())
      last = result{r};
    return broken_ ? result{} : std::move(last);
  }

  /// Runs SQL (several statements allowed) within the call's deadline.
  result query(const std::string& sql) {
    return broken_ ? result{} : last_result(PQsendQuery(conn_, sql.c_str()));
  }

  caf::error exec(const std::string& sql) {
    return query(sql).ok() ? caf::none : fail("PostgreSQL failed");
  }

  result exec_prepared(const char* name, params& p) {
    if (broken_)
      return result{};
    return last_result(PQsendQueryPrepared(conn_, name, p.size(), p.data(),
                                           nullptr, nullptr, 0));
  }

  caf::error fail(const std::string& what) {
    auto why = timed_out_
                 ? "no answer within " + std::to_string(answer_timeout.count())
                     + " s, the connection is dropped"
                 : message_of(conn_);
    timed_out_ = false;
    return make_error(ec::storage_error,
                      what + " (PostgreSQL database " + where_ + "): " + why);
  }

  caf::error send_write(const storage_write& w) {
    if (has_nul(w))
      return make_error(ec::storage_error,
                        "PostgreSQL text cannot hold a NUL byte (lease '"
                          + w.record.id + "')");
    params p;
    const char* name = nullptr;
    switch (w.kind) {
      case storage_write::save:
        name = "save";
        p = lease_params(w.record);
        p.add(instance_);
        break;
      case storage_write::remove:
        name = "remove";
        p.add(w.record.id);
        break;
      case storage_write::save_job:
        name = "save_job";
        p.add(w.job.id)
          .add(w.job.backend)
          .add(w.job.tag)
          .add(w.job.created_ms)
          .add(static_cast<int64_t>(w.job.total))
          .add(to_string(w.job.state))
          .add(w.job.finished_ms)
          .add(instance_);
        break;
      case storage_write::remove_job:
        name = "remove_job";
        p.add(w.job.id);
        break;
    }
    if (!PQsendQueryPrepared(conn_, name, p.size(), p.data(), nullptr, nullptr,
                             0))
      return fail("cannot send a write");
    return caf::none;
  }

  /// Sends BEGIN, every write and COMMIT in one round trip (pipeline mode),
  /// then reads every answer: a reply only after the COMMIT succeeded.
  caf::error pipeline(const std::vector<storage_write>& batch) {
    if (!PQenterPipelineMode(conn_))
      return fail("cannot enter pipeline mode");
    caf::error err;
    size_t sent = 0;
    if (!PQsendQueryParams(conn_, "BEGIN", 0, nullptr, nullptr, nullptr,
                           nullptr, 0))
      err = fail("cannot begin a transaction");
    else
      ++sent;
    for (auto& w : batch) {
      if (err || (err = send_write(w)))
        break;
      ++sent;
    }
    if (!err
        && PQsendQueryParams(conn_, "COMMIT", 0, nullptr, nullptr, nullptr,
                             nullptr, 0))
      ++sent;
    else if (!err)
      err = fail("cannot send COMMIT");
    if (!PQpipelineSync(conn_) && !err)
      err = fail("cannot send the batch");
    auto read = read_pipeline(sent);
    if (!broken_ && !PQexitPipelineMode(conn_))
      broken_ = true; // results left over: never reuse this connection
    if (!err)
      err = std::move(read);
    if (err && !broken_ && PQtransactionStatus(conn_) != PQTRANS_IDLE)
      query("ROLLBACK");
    return err;
  }

  /// Reads `sent` answers and the sync; the first failure is the error.
  caf::error read_pipeline(size_t sent) {
    caf::error first;
    for (size_t i = 0; i < sent; ++i) {
      result r{next_result()};
      if (!r.res) // the connection broke or the deadline passed
        return first ? first : fail("cannot apply a batch of writes");
      if (!r.ok() && !first)
        first = fail("cannot apply a batch of writes");
      while (auto* extra = next_result()) // the NULL after each query
        PQclear(extra);
    }
    for (;;) {
      result r{next_result()};
      if (!r.res || r.status() == PGRES_PIPELINE_SYNC)
        break;
    }
    if (broken_ && !first)
      return fail("cannot apply a batch of writes");
    return first;
  }

  /// The rows of a prepared lease query, read one at a time so that a page
  /// stops before the row that would pass `max_bytes` (then `cut`), though
  /// never before the first; the rest is read and dropped.
  caf::expected<std::vector<lease>> query_leases(const char* name, params& p,
                                                 size_t max_bytes, bool& cut) {
    if (auto err = ensure_connected())
      return err;
    if (!PQsendQueryPrepared(conn_, name, p.size(), p.data(), nullptr, nullptr,
                             0)
        || !PQsetSingleRowMode(conn_))
      return check_connection(fail("cannot read leases"));
    std::vector<lease> rows;
    size_t bytes = 0;
    caf::error err;
    while (auto* raw = next_result()) {
      result r{raw};
      if (r.status() != PGRES_SINGLE_TUPLE) {
        if (!r.ok() && !err)
          err = fail("cannot read leases");
        continue;
      }
      if (cut)
        continue;
      auto x = lease_of(r, 0);
      bytes += page_bytes(x);
      if (bytes > max_bytes && !rows.empty())
        cut = true;
      else
        rows.push_back(std::move(x));
    }
    if (broken_ && !err)
      err = fail("cannot read leases");
    if (err)
      return check_connection(std::move(err));
    return check_connection(std::move(rows));
  }

  // -- shared use
  // --------------------------------------------------------------

  caf::error heartbeat() {
    params p;
    p.add(instance_);
    if (!exec_prepared("heartbeat", p).ok())
      return fail("cannot say this instance is alive");
    return caf::none;
  }

  caf::expected<std::vector<revoke_job>> claim_jobs(int64_t dead_after_ms) {
    params p;
    p.add(dead_after_ms).add(instance_);
    return read_jobs("claim_jobs", p);
  }

  /// The leases a claiming (or conditional) statement returns: every one,
  /// as claimed work must not be cut at a page bound.
  caf::expected<std::vector<lease>> claim(const char* name, params& p) {
    bool cut = false;
    return query_leases(name, p, SIZE_MAX, cut);
  }

  static caf::expected<lease> one_lease(caf::expected<std::vector<lease>> rows,
                                        const std::string& id) {
    if (!rows)
      return std::move(rows.error());
    if (rows->empty())
      return make_error(ec::not_found, "no live lease has the id '" + id + "'");
    return std::move(rows->front());
  }

  static void append(std::vector<lease>& to, std::vector<lease> more) {
    to.insert(to.end(), std::make_move_iterator(more.begin()),
              std::make_move_iterator(more.end()));
  }

  /// A PostgreSQL text[] literal; lease ids need no escaping, but a quote
  /// or backslash would be escaped all the same.
  static std::string text_array(const std::vector<std::string>& items) {
    std::string out = "{";
    for (auto& item : items) {
      if (out.size() > 1)
        out += ',';
      out += '"';
      for (char c : item) {
        if (c == '"' || c == '\\')
          out += '\\';
        out += c;
      }
      out += '"';
    }
    return out + "}";
  }

  std::string conninfo_;
  std::string password_;
  /// The database and server, for messages (never the password).
  std::string where_;
  bool created_ = false;
  PGconn* conn_ = nullptr;
  /// Our id among the instances sharing the database.
  std::string instance_ = random_id(9);
  /// Set when a wait failed or timed out: the connection is dropped at the
  /// end of the call.
  bool broken_ = false;
  bool timed_out_ = false;
  std::chrono::steady_clock::time_point deadline_;
};

} // namespace

caf::expected<std::unique_ptr<storage_backend>>
make_postgres_backend(const std::string& conninfo,
                      const std::string& password_file) {
  auto backend = std::make_unique<postgres_backend>();
  if (auto err = backend->open(conninfo, password_file))
    return err;
  return std::unique_ptr<storage_backend>{std::move(backend)};
}

} // namespace tlm
