// One conformance suite, run against every storage backend, plus the group
// commit of the storage actor.

#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "actors/list_view.hpp"
#include "core/error.hpp"
#include "storage_backends/storage_actor.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace tlm;

namespace {

/// A temp folder that removes itself.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/tlm-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::filesystem::remove_all(path);
  }
};

lease sample(const std::string& id, int64_t expires,
             std::vector<std::string> tags = {},
             std::string backend = "local") {
  lease x;
  x.id = id;
  x.backend = std::move(backend);
  x.backend_id = "b-" + id;
  x.value = "v-" + id;
  x.ttl_ms = 1000;
  x.issued_ms = expires - 1000;
  x.expires_ms = expires;
  x.tags = std::move(tags);
  x.meta = R"({"m":"é"})";
  x.description = "desc " + id;
  x.scope = "readonly";
  x.last_access_ms = expires - 500;
  x.row_id = expires * 1000;
  return x;
}

/// A running PostgreSQL server to test against, when the environment
/// names one (a URI without a database, e.g. postgresql://admin@host:port;
/// the password comes from PGPASSFILE): tests/integration/
/// test_storage_conformance.py starts one and sets it.
const char* postgres_server() {
  auto uri = std::getenv("TLM_TEST_POSTGRES");
  return uri && *uri ? uri : nullptr;
}

/// Runs one statement on the server's `postgres` database.
void postgres_admin(const std::string& sql) {
  auto conn = PQconnectdb(
    (std::string{postgres_server()} + "/postgres").c_str());
  REQUIRE_MESSAGE(PQstatus(conn) == CONNECTION_OK, PQerrorMessage(conn));
  auto res = PQexec(conn, sql.c_str());
  auto ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  std::string why = PQerrorMessage(conn);
  PQclear(res);
  PQfinish(conn);
  REQUIRE_MESSAGE(ok, why);
}

/// A new, empty database on the test server; its `postgresql://` spec.
std::string new_postgres_database() {
  static int count = 0;
  auto name = "tlm_conf_" + std::to_string(getpid()) + "_"
              + std::to_string(++count);
  postgres_admin("CREATE DATABASE " + name);
  return std::string{postgres_server()} + "/" + name;
}

/// The stores every conformance case runs on, side by side; `postgres`
/// only when a server is named (each call a new database).
std::vector<std::string> specs(const temp_dir& dir) {
  std::vector<std::string> all = {"memory",
                                  "sqlite:" + (dir.path / "t.db").string()};
  if (postgres_server())
    all.push_back(new_postgres_database());
  return all;
}

} // namespace

TEST_CASE("every storage backend keeps the same contract"
          * doctest::test_suite("storage_conformance")) {
  temp_dir dir;
  for (auto& spec : specs(dir)) {
    CAPTURE(spec);
    auto made = make_storage_backend(spec);
    REQUIRE(made);
    auto& db = **made;
    std::vector<storage_write> batch;
    for (int i = 0; i < 30; ++i) {
      auto id = "id" + std::to_string(100 + i);
      batch.push_back({storage_write::save,
                       sample(id, 10'000 + i,
                              i % 3 == 0 ? std::vector<std::string>{"t", "u"}
                                         : std::vector<std::string>{},
                              i % 2 == 0 ? "local" : "other")});
    }
    REQUIRE(!db.apply(batch));
    auto got = db.get("id105");
    REQUIRE(got);
    CHECK(got->value == "v-id105");
    CHECK(got->meta == R"({"m":"é"})");
    CHECK(got->description == "desc id105");
    CHECK(got->expires_ms == 10'005);
    CHECK(got->state == state_active);
    CHECK(got->scope == "readonly");
    CHECK(got->last_access_ms == 9'505);
    CHECK(got->row_id == 10'005'000);
    CHECK(code_of(db.get("nope").error()) == ec::not_found);

    // Saving again replaces, tags included.
    auto changed = sample("id100", 20'000, {"v"});
    REQUIRE(!db.apply({{storage_write::save, changed}}));
    CHECK(db.get("id100")->expires_ms == 20'000);
    CHECK(db.get("id100")->tags == std::vector<std::string>{"v"});

    // Removal, also of an unknown id.
    REQUIRE(!db.apply({{storage_write::remove, sample("id101", 0)},
                       {storage_write::remove, sample("zzz", 0)}}));
    CHECK(!db.get("id101"));

    // Load in batches returns everything once, in id order.
    std::vector<std::string> loaded;
    std::string after;
    for (;;) {
      auto part = db.load(after, 7);
      REQUIRE(part);
      CHECK(part->leases.size() <= 7);
      for (auto& x : part->leases)
        loaded.push_back(x.id);
      if (part->next_after.empty())
        break;
      after = part->next_after;
    }
    CHECK(loaded.size() == 29);
    CHECK(std::set<std::string>(loaded.begin(), loaded.end()).size() == 29);

    // List: filters, expiry cut-off, paging.
    list_query q;
    int64_t now_ms = 0;
    q.limit = 4;
    now_ms = 10'010; // id100..id109 expired, except the replaced id100
    std::set<std::string> seen;
    for (int pages = 0; pages < 20; ++pages) {
      auto page = db.list(filter_of(q, now_ms));
      REQUIRE(page);
      CHECK(page->leases.size() <= 4);
      for (auto& x : page->leases)
        CHECK(seen.insert(x.id).second);
      if (page->next_after.empty())
        break;
      q.after = page->next_after;
    }
    CHECK(seen.size() == 20);
    CHECK(seen.count("id100") == 1);
    q = list_query{};
    now_ms = 0;
    q.tag = "t";
    auto tagged = db.list(filter_of(q, now_ms));
    CHECK(tagged->leases.size() == 9); // i % 3 == 0 minus the retagged id100
    q.tag.clear();
    q.backend = "other";
    CHECK(db.list(filter_of(q, now_ms))->leases.size() == 14);

    // An intent record is loaded at start but never listed.
    auto intent = sample("id999", 90'000);
    intent.state = state_pending;
    REQUIRE(!db.apply({{storage_write::save, intent}}));
    CHECK(db.get("id999")->state == state_pending);
    q = list_query{};
    now_ms = 0;
    q.limit = 1000;
    auto everything = db.list(filter_of(q, now_ms));
    REQUIRE(everything);
    for (auto& x : everything->leases)
      CHECK(x.id != "id999");
    CHECK(db.load("", 1000)->leases.size() == 30);

    // An irrevocable lease is listed although it expired, with its reason.
    auto stuck = sample("id998", 1);
    stuck.state = state_irrevocable;
    stuck.attempts = 10;
    stuck.last_error = "backend down";
    REQUIRE(!db.apply({{storage_write::save, stuck}}));
    auto read_back = db.get("id998");
    CHECK(read_back->attempts == 10);
    CHECK(read_back->last_error == "backend down");
    auto with_stuck = db.list(filter_of(q, now_ms));
    REQUIRE(with_stuck);
    CHECK(std::any_of(with_stuck->leases.begin(), with_stuck->leases.end(),
                      [](const lease& x) { return x.id == "id998"; }));
    // Filtered by state: only the irrevocable one, or only the live ones.
    q.state = list_state::irrevocable;
    auto only_stuck = db.list(filter_of(q, now_ms));
    REQUIRE(only_stuck);
    REQUIRE(only_stuck->leases.size() == 1);
    CHECK(only_stuck->leases[0].id == "id998");
    q.state = list_state::active;
    auto only_live = db.list(filter_of(q, now_ms));
    REQUIRE(only_live);
    CHECK(only_live->leases.size() == with_stuck->leases.size() - 1);
    for (auto& x : only_live->leases)
      CHECK(x.state == state_active);
  }
}

TEST_CASE("every storage backend keeps revoke jobs, apart from leases"
          * doctest::test_suite("storage_conformance")) {
  temp_dir dir;
  for (auto& spec : specs(dir)) {
    CAPTURE(spec);
    auto made = make_storage_backend(spec);
    REQUIRE(made);
    auto& db = **made;
    revoke_job a;
    a.id = "job-a";
    a.backend = "local";
    a.created_ms = 1'000;
    a.total = 12;
    revoke_job b = a;
    b.id = "job-b";
    b.backend = "";
    b.tag = "blue";
    b.created_ms = 2'000;
    REQUIRE(!db.apply({{storage_write::save_job, {}, a},
                       {storage_write::save_job, {}, b},
                       {storage_write::save, sample("lease", 5)}}));
    a.state = job_state::done;
    a.finished_ms = 1'500;
    revoke_job gone;
    gone.id = "job-b";
    REQUIRE(!db.apply({{storage_write::save_job, {}, a},
                       {storage_write::remove_job, {}, gone}}));
    auto jobs = db.load_jobs();
    REQUIRE(jobs);
    REQUIRE(jobs->size() == 1);
    auto& job = jobs->front();
    CHECK(job.id == "job-a");
    CHECK(job.backend == "local");
    CHECK(job.tag.empty());
    CHECK(job.created_ms == 1'000);
    CHECK(job.total == 12);
    CHECK(job.state == job_state::done);
    CHECK(job.finished_ms == 1'500);
    CHECK(db.load("", 10)->leases.size() == 1);
  }
}

TEST_CASE("sqlite upgrades a version 2 database to version 3") {
  temp_dir dir;
  auto path = (dir.path / "old.db").string();
  {
    auto db = make_storage_backend("sqlite:" + path);
    REQUIRE(db);
    REQUIRE(!(*db)->apply({{storage_write::save, sample("old", 5)}}));
  }
  // Turn it back into what version 2 wrote: no jobs table.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw,
                       "DROP TABLE revoke_jobs; UPDATE schema_version "
                       "SET version = 2;",
                       nullptr, nullptr, nullptr)
          == SQLITE_OK);
  sqlite3_close(raw);
  auto db = make_storage_backend("sqlite:" + path);
  REQUIRE(db);
  CHECK((*db)->get("old")->value == "v-old");
  CHECK((*db)->load_jobs()->empty());
}

TEST_CASE("the memory store refuses records it cannot hold, all or "
          "nothing") {
  auto db = make_storage_backend("memory");
  REQUIRE(db);
  auto odd_state = sample("fine-id", 5);
  odd_state.state = "exploded";
  CHECK((*db)->apply({{storage_write::save, sample("kept-out", 5)},
                      {storage_write::save, odd_state}}));
  CHECK((*db)->apply({{storage_write::save, sample("kept-out", 5)},
                      {storage_write::save, sample("an id.with a dot", 5)}}));
  CHECK(!(*db)->get("kept-out"));
}

TEST_CASE("sqlite keeps leases across reopening") {
  temp_dir dir;
  auto spec = "sqlite:" + (dir.path / "t.db").string();
  {
    auto db = make_storage_backend(spec);
    REQUIRE(db);
    REQUIRE(!(*db)->apply({{storage_write::save, sample("keep", 5)}}));
  }
  auto db = make_storage_backend(spec);
  REQUIRE(db);
  CHECK((*db)->get("keep")->value == "v-keep");
}

TEST_CASE("a bad storage spec is refused with a clear message") {
  auto db = make_storage_backend("mysql:x");
  REQUIRE(!db);
  CHECK(message_of(db.error()).find("memory") != std::string::npos);
  CHECK(!make_storage_backend("sqlite:/proc/no/such/dir/t.db"));
}

TEST_CASE("sqlite creates no folder, and refuses a missing one by name") {
  temp_dir dir;
  auto folder = dir.path / "no" / "such";
  auto db = make_storage_backend("sqlite:" + (folder / "t.db").string());
  REQUIRE(!db);
  CHECK(message_of(db.error()).find(folder.string() + "' does not exist")
        != std::string::npos);
  CHECK(!std::filesystem::exists(dir.path / "no"));
}

TEST_CASE("sqlite says whether it created the database") {
  temp_dir dir;
  auto spec = "sqlite:" + (dir.path / "t.db").string();
  {
    auto db = make_storage_backend(spec);
    REQUIRE(db);
    CHECK((*db)->created_new());
    REQUIRE(!(*db)->apply({{storage_write::save, sample("keep", 5)}}));
  }
  auto db = make_storage_backend(spec);
  REQUIRE(db);
  CHECK(!(*db)->created_new());
  CHECK(!(*make_storage_backend("memory"))->created_new());
}

TEST_CASE("sqlite refuses a database that is open elsewhere, until closed") {
  temp_dir dir;
  auto path = (dir.path / "t.db").string();
  auto first = make_storage_backend("sqlite:" + path);
  REQUIRE(first);
  // flock(2) belongs to an open file description, so a second open in the
  // same process conflicts just like another process would.
  auto second = make_storage_backend("sqlite:" + path);
  REQUIRE(!second);
  auto text = message_of(second.error());
  CHECK(text.find("'" + path + "' is in use by another process")
        != std::string::npos);
  CHECK(text.find("pid " + std::to_string(getpid())) != std::string::npos);
  // The refused attempt never opened the database file, so no close()
  // dropped the first one's SQLite (POSIX) locks: it still writes.
  CHECK(!(*first)->apply({{storage_write::save, sample("still", 5)}}));
  first->reset();
  auto third = make_storage_backend("sqlite:" + path);
  REQUIRE(third);
  CHECK((*third)->get("still")->value == "v-still");
}

namespace {

/// Counts transactions to show that writes are grouped.
class counting_backend : public storage_backend {
public:
  std::shared_ptr<std::vector<size_t>> batches =
    std::make_shared<std::vector<size_t>>();
  bool blocking() const override {
    return false;
  }
  caf::error apply(const std::vector<storage_write>& b) override {
    batches->push_back(b.size());
    return caf::none;
  }
  caf::expected<lease> get(const std::string&) override {
    return make_error(ec::not_found, "none");
  }
  caf::expected<lease_page> load(const std::string&, uint32_t) override {
    return lease_page{};
  }
  caf::expected<lease_page> list(const lease_filter&) override {
    return lease_page{};
  }
  caf::expected<std::vector<revoke_job>> load_jobs() override {
    return std::vector<revoke_job>{};
  }
};

} // namespace

TEST_CASE_FIXTURE(test::actor_fixture,
                  "the storage actor commits queued writes as one batch") {
  auto backend = std::make_unique<counting_backend>();
  auto batches = backend->batches;
  auto storage = own(spawn_storage_actor(*sys, std::move(backend)));
  std::vector<std::shared_ptr<std::optional<caf::expected<atom::ok>>>> replies;
  for (int i = 0; i < 50; ++i)
    replies.push_back(send_request<atom::ok>(
      storage, atom::save_v, sample("x" + std::to_string(i), 1)));
  // Every request reaches the mailbox before the actor runs.
  for (int i = 0; i < 50; ++i)
    sched->run_once();
  sched->run();
  for (auto& r : replies) {
    REQUIRE(r->has_value());
    CHECK(**r);
  }
  CHECK(batches->size() < 5);
  size_t total = 0;
  for (auto n : *batches)
    total += n;
  CHECK(total == 50);
}

TEST_CASE("every storage backend bounds a page by bytes as well as by "
          "count"
          * doctest::test_suite("storage_conformance")) {
  temp_dir dir;
  for (auto& spec : specs(dir)) {
    CAPTURE(spec);
    auto made = make_storage_backend(spec);
    REQUIRE(made);
    auto& db = **made;
    std::vector<storage_write> batch;
    std::string big = R"({"x":")" + std::string(60'000, 'a') + R"("})";
    for (int i = 0; i < 40; ++i) {
      auto x = sample("big" + std::to_string(100 + i), 10'000);
      x.meta = big;
      batch.push_back({storage_write::save, x});
    }
    REQUIRE(!db.apply(batch));
    list_query q;
    int64_t now_ms = 0;
    q.limit = 1000;
    std::set<std::string> seen;
    for (int pages = 1;; ++pages) {
      REQUIRE(pages <= 40);
      auto page = db.list(filter_of(q, now_ms));
      REQUIRE(page);
      CHECK(!page->leases.empty());
      size_t bytes = 0;
      for (auto& x : page->leases) {
        bytes += page_bytes(x);
        CHECK(seen.insert(x.id).second);
      }
      CHECK(bytes <= max_list_page_bytes);
      if (page->next_after.empty())
        break;
      q.after = page->next_after;
    }
    CHECK(seen.size() == 40);
  }
}

TEST_CASE("sqlite upgrades a version 3 database to version 5, keeping every "
          "lease and its tags") {
  temp_dir dir;
  auto path = (dir.path / "v3.db").string();
  // What version 3 wrote: an unused next_attempt_ms column, and the tags
  // twice, in their JSON column and in lease_tags.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, R"sql(
    CREATE TABLE schema_version(version INTEGER NOT NULL);
    INSERT INTO schema_version VALUES(3);
    CREATE TABLE leases(id TEXT PRIMARY KEY, backend TEXT NOT NULL,
      backend_id TEXT NOT NULL, value TEXT NOT NULL, ttl_ms INTEGER NOT NULL,
      issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
      renewable INTEGER NOT NULL, tags TEXT NOT NULL, meta TEXT NOT NULL,
      description TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active',
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_ms INTEGER NOT NULL DEFAULT 0,
      last_error TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
    CREATE TABLE lease_tags(tag TEXT NOT NULL, lease_id TEXT NOT NULL,
      PRIMARY KEY(tag, lease_id)) WITHOUT ROWID;
    CREATE TABLE revoke_jobs(id TEXT PRIMARY KEY, backend TEXT NOT NULL,
      tag TEXT NOT NULL, created_ms INTEGER NOT NULL, total INTEGER NOT NULL,
      state TEXT NOT NULL, finished_ms INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO leases VALUES('old1', 'local', 'b1', 'v1', 1000, 1000,
      9000000000000, 1, '["a","b"]', '{}', 'd', 'active', 0, 0, '');
    INSERT INTO leases VALUES('old2', 'local', 'b2', 'v2', 1000, 1000,
      9000000000000, 0, '[]', '{}', '', 'revoking', 3, 0, 'down');
    INSERT INTO lease_tags VALUES('a', 'old1'), ('b', 'old1');
  )sql",
                       nullptr, nullptr, nullptr)
          == SQLITE_OK);
  sqlite3_close(raw);
  {
    auto db = make_storage_backend("sqlite:" + path);
    REQUIRE(db);
    auto one = (*db)->get("old1");
    REQUIRE(one);
    CHECK(one->tags == std::vector<std::string>{"a", "b"});
    CHECK(one->value == "v1");
    // v5: no scope, never accessed, a row id from the issue time.
    CHECK(one->scope.empty());
    CHECK(one->last_access_ms == 0);
    CHECK(one->row_id == 1000 * 1000);
    auto two = (*db)->get("old2");
    REQUIRE(two);
    CHECK(two->attempts == 3);
    CHECK(two->last_error == "down");
    list_query q;
    int64_t now_ms = 0;
    q.tag = "b";
    now_ms = 2000;
    auto page = (*db)->list(filter_of(q, now_ms));
    REQUIRE(page);
    REQUIRE(page->leases.size() == 1);
    CHECK(page->leases[0].id == "old1");
  }
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  auto count = [&](const char* sql) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(raw, sql, -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    auto n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  };
  CHECK(count("SELECT max(version) FROM schema_version") == 5);
  CHECK(count("SELECT count(*) FROM sqlite_master WHERE name = 'lease_tags'")
        == 0);
  CHECK(count("SELECT count(*) FROM pragma_table_info('leases') "
              "WHERE name = 'next_attempt_ms'")
        == 0);
  sqlite3_close(raw);
}

TEST_CASE("every store paged by id pages in the byte order of ids"
          * doctest::test_suite("storage_conformance")) {
  temp_dir dir;
  for (auto& spec : specs(dir)) {
    CAPTURE(spec);
    if (spec == "memory")
      continue; // pages in the order of insertion, ids packed
    auto made = make_storage_backend(spec);
    REQUIRE(made);
    auto& db = **made;
    // A locale's collation would put "_" and "a" before "B".
    std::vector<std::string> ids = {"a1",
                                    "B2",
                                    "_3",
                                    "b4",
                                    "A5",
                                    "\xc3\xa9"
                                    "6"};
    std::vector<storage_write> batch;
    for (auto& id : ids)
      batch.push_back({storage_write::save, sample(id, 10'000)});
    REQUIRE(!db.apply(batch));
    std::sort(ids.begin(), ids.end());
    std::vector<std::string> loaded, listed;
    for (std::string after;;) {
      auto page = db.load(after, 2);
      REQUIRE(page);
      for (auto& x : page->leases)
        loaded.push_back(x.id);
      if ((after = page->next_after).empty())
        break;
    }
    list_query q;
    q.limit = 2;
    for (;;) {
      auto page = db.list(filter_of(q, 0));
      REQUIRE(page);
      for (auto& x : page->leases)
        listed.push_back(x.id);
      if ((q.after = page->next_after).empty())
        break;
    }
    CHECK(loaded == ids);
    CHECK(listed == ids);
  }
}

TEST_CASE("every storage backend writes a batch all or nothing"
          * doctest::test_suite("storage_conformance")) {
  temp_dir dir;
  for (auto& spec : specs(dir)) {
    CAPTURE(spec);
    if (spec == "memory")
      continue; // refuses bad records up front (its own case above)
    auto made = make_storage_backend(spec);
    REQUIRE(made);
    auto& db = **made;
    REQUIRE(!db.apply({{storage_write::save, sample("kept", 5)}}));
    // A NUL byte cannot be stored as text: the whole batch fails.
    auto bad = sample("bad", 5);
    bad.description = std::string("a\0b", 3);
    auto err = db.apply({{storage_write::remove, sample("kept", 0)},
                         {storage_write::save, sample("new", 5)},
                         {storage_write::save, bad}});
    if (spec.rfind("sqlite:", 0) == 0) {
      CHECK(!err); // SQLite keeps any bytes
      continue;
    }
    REQUIRE(err);
    CHECK(code_of(err) == ec::storage_error);
    CHECK(db.get("kept"));
    CHECK(!db.get("new"));
    // Invalid UTF-8: refused by the server, in the middle of the batch.
    bad.description = "\xff\xfe";
    err = db.apply({{storage_write::remove, sample("kept", 0)},
                    {storage_write::save, sample("new", 5)},
                    {storage_write::save, bad},
                    {storage_write::save, sample("new2", 5)}});
    REQUIRE(err);
    CHECK(code_of(err) == ec::storage_error);
    CHECK(db.get("kept"));
    CHECK(!db.get("new"));
    // The connection is usable after the failed transaction.
    REQUIRE(!db.apply({{storage_write::save, sample("after", 5)}}));
    CHECK(db.get("after"));
  }
}

TEST_CASE("postgres keeps leases across reopening and says when it made "
          "the schema"
          * doctest::test_suite("storage_conformance")) {
  if (!postgres_server())
    return;
  auto spec = new_postgres_database();
  {
    auto db = make_storage_backend(spec);
    REQUIRE(db);
    CHECK((*db)->created_new());
    REQUIRE(!(*db)->apply({{storage_write::save, sample("keep", 5, {"t"})}}));
  }
  auto db = make_storage_backend(spec);
  REQUIRE(db);
  CHECK(!(*db)->created_new());
  CHECK((*db)->get("keep")->value == "v-keep");
  CHECK((*db)->get("keep")->tags == std::vector<std::string>{"t"});
}

TEST_CASE("postgres: instances starting at once on an empty database share "
          "it"
          * doctest::test_suite("storage_conformance")) {
  if (!postgres_server())
    return;
  auto spec = new_postgres_database();
  // Both come up, neither with a half-made schema: the schema work is
  // ordered by a transaction lock, and exactly one of them made it.
  caf::expected<std::unique_ptr<storage_backend>> a{caf::error{}};
  caf::expected<std::unique_ptr<storage_backend>> b{caf::error{}};
  std::thread ta{[&] { a = make_storage_backend(spec); }};
  std::thread tb{[&] { b = make_storage_backend(spec); }};
  ta.join();
  tb.join();
  REQUIRE(a);
  REQUIRE(b);
  CHECK((*a)->created_new() != (*b)->created_new());
  REQUIRE((*a)->shared() != nullptr);
  CHECK((*a)->shared()->instance() != (*b)->shared()->instance());
  CHECK(!(*a)->apply({{storage_write::save, sample("still", 5)}}));
  CHECK((*b)->get("still")->value == "v-still");
  a->reset();
  auto again = make_storage_backend(spec);
  REQUIRE(again);
  CHECK((*again)->get("still")->value == "v-still");
  CHECK(!(*again)->created_new());
}

TEST_CASE("postgres: claims and conditional changes decide which instance "
          "does what"
          * doctest::test_suite("storage_conformance")) {
  if (!postgres_server())
    return;
  auto spec = new_postgres_database();
  auto a_store = make_storage_backend(spec);
  auto b_store = make_storage_backend(spec);
  REQUIRE(a_store);
  REQUIRE(b_store);
  auto& a = *(*a_store)->shared();
  auto& b = *(*b_store)->shared();
  auto swap_me = sample("swap", 9000);
  swap_me.value = "old";
  REQUIRE(!(*a_store)->apply({{storage_write::save, sample("due", 1000)},
                              {storage_write::save, sample("live", 5000)},
                              {storage_write::save, sample("renew", 9000)},
                              {storage_write::save, swap_me}}));
  // Due at 2000: "due" only, and only for the first to claim it.
  auto got = a.claim_due({"due", "live"}, 2000);
  REQUIRE(got);
  REQUIRE(got->size() == 1);
  CHECK(got->front().id == "due");
  CHECK(got->front().state == state_revoking);
  CHECK(b.claim_due({"due"}, 2000)->empty());
  // A client's revoke claims a live lease once.
  auto live = b.claim_live({"live", "due"}, 2000); // "due" expired
  REQUIRE(live);
  REQUIRE(live->size() == 1);
  CHECK(live->front().id == "live");
  CHECK(a.claim_live({"live"}, 2000)->empty());
  // Renew takes only while live.
  live_update r;
  r.id = "renew";
  r.now_ms = 3000;
  r.ttl_ms = 17000;
  r.expires_ms = 20000;
  CHECK(a.renew_live(r)->expires_ms == 20000);
  r.id = "due";
  CHECK(code_of(a.renew_live(r).error()) == ec::not_found);
  // Of two swaps of one value, one wins.
  live_update x;
  x.id = "swap";
  x.now_ms = 3000;
  x.old_value = "old";
  x.new_value = "new";
  x.meta = R"({"n":1})";
  x.max_ttl_ms = 100000;
  auto won = a.swap_live(x);
  REQUIRE(won);
  CHECK(won->value == "new");
  CHECK(won->expires_ms == 3000 + 1000); // a fresh term of its ttl
  x.new_value = "other";
  CHECK(code_of(b.swap_live(x).error()) == ec::invalid_token);
  // Counts: "renew" and "swap" live at 3000.
  auto counts = b.count(3000);
  REQUIRE(counts);
  REQUIRE(counts->size() == 1);
  CHECK(counts->front().live == 2);
  // While a is alive its claim stays its own; once it is dead (a timeout
  // of 0: nobody was heard of since now), b takes it over.
  orphan_query q{3000, 600'000, 100, true};
  auto work = b.claim_orphans(q);
  REQUIRE(work);
  CHECK(work->leases.empty());
  q.dead_after_ms = 0;
  work = b.claim_orphans(q);
  REQUIRE(work);
  std::set<std::string> taken;
  for (auto& l : work->leases)
    taken.insert(l.id);
  CHECK(taken.count("due") == 1);
  // Not taking the dead's work (after an outage) leaves it alone.
  q.take_dead = false;
  CHECK(a.claim_orphans(q)->leases.empty());
}

TEST_CASE("postgres upgrades a version 1 database to version 3, keeping "
          "every lease"
          * doctest::test_suite("storage_conformance")) {
  if (!postgres_server())
    return;
  auto spec = new_postgres_database();
  // Version 1 as the single-instance tlmd made it, with two leases.
  auto conn = PQconnectdb(spec.c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  auto res = PQexec(conn, R"sql(
CREATE TABLE schema_version(version INTEGER NOT NULL);
INSERT INTO schema_version VALUES(1);
CREATE TABLE leases(id TEXT COLLATE "C" PRIMARY KEY, backend TEXT NOT NULL,
  backend_id TEXT NOT NULL, value TEXT NOT NULL, ttl_ms BIGINT NOT NULL,
  issued_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
  renewable BOOLEAN NOT NULL, tags JSONB NOT NULL, meta TEXT NOT NULL,
  description TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'active',
  attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '');
CREATE TABLE revoke_jobs(id TEXT COLLATE "C" PRIMARY KEY,
  backend TEXT NOT NULL, tag TEXT NOT NULL, created_ms BIGINT NOT NULL,
  total BIGINT NOT NULL, state TEXT NOT NULL, finished_ms BIGINT NOT NULL);
INSERT INTO leases VALUES('live', 'local', 'b-live', 'v-live', 1000, 9000,
  10000, false, '["t"]', '{}', '', 'active', 0, '');
INSERT INTO leases VALUES('dying', 'local', 'b-dying', 'v-dying', 1000, 0,
  1000, false, '[]', '{}', '', 'revoking', 2, 'down');
)sql");
  auto made = PQresultStatus(res) == PGRES_COMMAND_OK;
  std::string why = PQerrorMessage(conn);
  PQclear(res);
  PQfinish(conn);
  REQUIRE_MESSAGE(made, why);
  auto db = make_storage_backend(spec);
  REQUIRE(db);
  CHECK(!(*db)->created_new());
  CHECK((*db)->get("live")->tags == std::vector<std::string>{"t"});
  CHECK((*db)->get("dying")->attempts == 2);
  // Version 3: no scope, never accessed, a row id from the issue time.
  CHECK((*db)->get("live")->scope.empty());
  CHECK((*db)->get("live")->last_access_ms == 0);
  CHECK((*db)->get("live")->row_id == 9000 * 1000);
  // The old single instance's revocation belongs to nobody alive now.
  auto work = (*db)->shared()->claim_orphans({5000, 600'000, 10, true});
  REQUIRE(work);
  REQUIRE(work->leases.size() == 1);
  CHECK(work->leases.front().id == "dying");
}

TEST_CASE("postgres refuses a password in the connection string, a bad "
          "string and a newer schema, saying why"
          * doctest::test_suite("storage_conformance")) {
  if (!postgres_server())
    return;
  auto with_pw = make_storage_backend("postgres:host=127.0.0.1 "
                                      "password=s3cret-value dbname=x");
  REQUIRE(!with_pw);
  CHECK(message_of(with_pw.error()).find("storage_password_file")
        != std::string::npos);
  CHECK(message_of(with_pw.error()).find("s3cret") == std::string::npos);
  auto uri_pw = make_storage_backend("postgresql://u:s3cret-value@h/db");
  REQUIRE(!uri_pw);
  CHECK(message_of(uri_pw.error()).find("s3cret") == std::string::npos);
  CHECK(!make_storage_backend("postgres:host 'unclosed s3cret"));
  auto spec = new_postgres_database();
  REQUIRE(make_storage_backend(spec));
  auto name = spec.substr(spec.rfind('/') + 1);
  auto conn = PQconnectdb(spec.c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  PQclear(PQexec(conn, "UPDATE schema_version SET version = 99"));
  PQfinish(conn);
  auto newer = make_storage_backend(spec);
  REQUIRE(!newer);
  CHECK(message_of(newer.error()).find("schema version 99, newer")
        != std::string::npos);
}
