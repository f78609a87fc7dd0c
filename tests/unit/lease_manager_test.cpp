// The lease manager driven on simulated time: every action, the expiry
// schedule, retries of failed revocations, and the start-up load.

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/lease_manager.hpp"
#include "actors/lease_manager_state.hpp"
#include "cloud_backends/cloud_actor.hpp"
#include "cloud_backends/local/local_backend.hpp"
#include "core/error.hpp"
#include "storage_backends/memory/memory_backend.hpp"
#include "storage_backends/storage_actor.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace std::chrono_literals;
using namespace tlm;

namespace {

constexpr int64_t start_ms = 1'800'000'000'000;

/// A cloud whose revocations fail on demand and that records what it saw.
class flaky_backend : public cloud_backend {
public:
  int failing_revokes = 0;
  bool lose_create_replies = false; ///< made, but the answer gets lost
  ec fail_code = ec::backend_unavailable;
  std::string fail_message = "down for maintenance";
  std::set<std::string> live;
  std::vector<std::string> revoked;

  bool blocking() const override {
    return false;
  }
  caf::expected<cloud_token> create(const std::string& id, int64_t,
                                    const nlohmann::json&) override {
    live.insert("b-" + id);
    if (lose_create_replies)
      return make_error(ec::backend_unavailable, "connection reset");
    return cloud_token{"b-" + id, "secret-" + id, "{}", id};
  }
  caf::error revoke(const std::string& id) override {
    if (failing_revokes > 0) {
      --failing_revokes;
      return make_error(fail_code, fail_message);
    }
    live.erase(id);
    revoked.push_back(id);
    return caf::none;
  }
  caf::expected<std::vector<cloud_token>> get_all() override {
    std::vector<cloud_token> result;
    for (auto& id : live)
      result.push_back({id, "", "{}", id.substr(2)});
    return result;
  }
  std::string describe() const override {
    return "flaky";
  }
};

/// Runs a blocking storage on the test scheduler, so simulated time and
/// `run()` cover it too.
class inline_storage : public storage_backend {
public:
  explicit inline_storage(std::unique_ptr<storage_backend> inner)
    : inner_(std::move(inner)) {
  }
  bool blocking() const override {
    return false;
  }
  caf::error apply(const std::vector<storage_write>& batch) override {
    if (fail_writes && *fail_writes)
      return make_error(ec::storage_error, "disk full");
    return inner_->apply(batch);
  }
  /// When set and true, every write fails (a full disk, a lost database).
  std::shared_ptr<bool> fail_writes;
  caf::expected<lease> get(const std::string& id) override {
    return inner_->get(id);
  }
  caf::expected<lease_page> load(const std::string& after,
                                 uint32_t max) override {
    return inner_->load(after, max);
  }
  caf::expected<std::vector<revoke_job>> load_jobs() override {
    return inner_->load_jobs();
  }
  caf::expected<lease_page> list(const lease_filter& filter) override {
    return inner_->list(filter);
  }

private:
  std::unique_ptr<storage_backend> inner_;
};

struct manager_fixture : test::actor_fixture {
  std::shared_ptr<flaky_backend> flaky = std::make_shared<flaky_backend>();
  storage_actor storage;
  lease_manager_actor manager;
  lease_manager_config mcfg;

  manager_fixture() {
    storage = own(spawn_storage_actor(*sys, make_memory_backend()));
    mcfg.storage = storage;
    mcfg.start_wall_ms = start_ms;
    mcfg.backends.push_back(
      {"local",
       own(spawn_cloud_actor(
         *sys, *make_local_backend("local", {{"type", "local"}}))),
       true});
    // Treated as remote: creations go through the intent record.
    mcfg.backends.push_back({"flaky", own(spawn_cloud_actor(*sys, flaky)),
                             false, true, std::chrono::seconds(5)});
    start();
  }

  void start() {
    manager = own(spawn_lease_manager(*sys, mcfg));
    REQUIRE(call<uint64_t>(manager, atom::ready_v));
  }

  lease create(create_request req) {
    auto x = call<lease>(manager, atom::create_v, req);
    REQUIRE(x);
    return *x;
  }

  lease create_ttl(int64_t ttl, bool renewable = false,
                   std::string backend = "local") {
    create_request req;
    req.ttl_ms = ttl;
    req.renewable = renewable;
    req.backend = backend;
    return create(req);
  }

  caf::expected<std::tuple<lease, bool>> renew(const std::string& id,
                                               int64_t ttl) {
    return call<std::tuple<lease, bool>>(manager, atom::renew_v, id, ttl);
  }

  ec code_of_get(const std::string& id) {
    auto x = call<lease>(manager, atom::get_v, id);
    return x ? ec::none : code_of(x.error());
  }

  uint64_t live_count() {
    return call<health_report>(manager, atom::health_v)->live;
  }
};

} // namespace

TEST_CASE_FIXTURE(manager_fixture, "create fills every lease field") {
  create_request req;
  req.ttl_ms = 60'000;
  req.tags = {"a", "b"};
  req.meta = R"({"k":1})";
  req.description = "d";
  req.renewable = true;
  auto x = create(req);
  CHECK(x.id.size() >= 16);
  CHECK(x.id.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                               "vwxyz0123456789-_")
        == std::string::npos);
  CHECK(x.backend == "local");
  CHECK(x.backend_id == x.id);
  CHECK(x.value.size() >= 43);
  CHECK(x.issued_ms == start_ms);
  CHECK(x.expires_ms == start_ms + 60'000);
  CHECK(x.tags == std::vector<std::string>{"a", "b"});
  CHECK(x.meta == R"({"k":1})");
  CHECK(x.renewable);
  auto stored = stored_lease(storage, x.id);
  REQUIRE(stored);
  CHECK(stored->value == x.value);
  CHECK(live_count() == 1);
}

TEST_CASE_FIXTURE(manager_fixture, "create checks ttl bounds and backend") {
  create_request req;
  req.ttl_ms = 999;
  auto x = call<lease>(manager, atom::create_v, req);
  REQUIRE(!x);
  CHECK(code_of(x.error()) == ec::invalid_request);
  req.ttl_ms = mcfg.max_ttl_ms + 1;
  x = call<lease>(manager, atom::create_v, req);
  CHECK(code_of(x.error()) == ec::invalid_request);
  req.ttl_ms = use_default_ttl;
  req.backend = "nope";
  x = call<lease>(manager, atom::create_v, req);
  CHECK(code_of(x.error()) == ec::unknown_backend);
  CHECK(live_count() == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "two leases never share an id") {
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i)
    ids.insert(create_ttl(60'000).id);
  CHECK(ids.size() == 200);
}

TEST_CASE_FIXTURE(manager_fixture, "a lease is dead from expires on and "
                                   "then revoked and removed") {
  auto x = create_ttl(2'000, false, "flaky");
  advance(1'999ms);
  CHECK(code_of_get(x.id) == ec::none);
  advance(1ms);
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
  CHECK(!stored_lease(storage, x.id));
  CHECK(live_count() == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "failed revocations are retried until "
                                   "they succeed and the lease stays dead") {
  auto x = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 3;
  advance(1'000ms);
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(flaky->revoked.empty());
  CHECK(stored_lease(storage, x.id)); // still stored
  for (int i = 0; i < 10 && flaky->revoked.empty(); ++i)
    advance(5'000ms);
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
  CHECK(!stored_lease(storage, x.id));
}

TEST_CASE_FIXTURE(manager_fixture,
                  "revoke revokes at the cloud, then forgets") {
  auto x = create_ttl(60'000, false, "flaky");
  auto ok = call<atom::ok>(manager, atom::revoke_v,
                           revoke_request{x.id, false});
  CHECK(ok);
  CHECK(flaky->revoked.size() == 1);
  CHECK(code_of_get(x.id) == ec::not_found);
  auto again = call<atom::ok>(manager, atom::revoke_v,
                              revoke_request{x.id, false});
  CHECK(code_of(again.error()) == ec::not_found);
}

TEST_CASE_FIXTURE(manager_fixture, "a failed client revoke says the lease is "
                                   "dead and its revocation pending, and "
                                   "health shows it until it heals") {
  auto x = create_ttl(60'000, false, "flaky");
  flaky->failing_revokes = 1;
  auto res = call<atom::ok>(manager, atom::revoke_v,
                            revoke_request{x.id, false});
  REQUIRE(!res);
  CHECK(code_of(res.error()) == ec::revocation_pending);
  CHECK(message_of(res.error()).find("down for maintenance")
        != std::string::npos);
  CHECK(flaky->live.count(x.backend_id) == 1); // the token still works...
  CHECK(code_of_get(x.id) == ec::not_found);   // ...but the lease is dead
  CHECK(live_count() == 0);
  // Asked again, the answer is the same, not a `not_found`.
  auto again = call<atom::ok>(manager, atom::revoke_v,
                              revoke_request{x.id, false});
  REQUIRE(!again);
  CHECK(code_of(again.error()) == ec::revocation_pending);
  auto h = call<health_report>(manager, atom::health_v);
  REQUIRE(h);
  CHECK(h->degraded());
  auto failing = std::find_if(h->backends.begin(), h->backends.end(),
                              [](auto& b) { return b.name == "flaky"; });
  REQUIRE(failing != h->backends.end());
  CHECK(failing->retrying == 1);
  CHECK(failing->failed_attempts == 1);
  CHECK(failing->last_error.find("down for maintenance") != std::string::npos);
  list_query q;
  q.state = list_state::revoking;
  auto page = call<lease_page>(manager, atom::list_v, q);
  REQUIRE(page);
  REQUIRE(page->leases.size() == 1);
  CHECK(page->leases[0].id == x.id);
  advance(1'000ms); // the first retry waits at most the base of 1 s
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
  CHECK(!stored_lease(storage, x.id));
  h = call<health_report>(manager, atom::health_v);
  CHECK(!h->degraded());
  page = call<lease_page>(manager, atom::list_v, q);
  CHECK(page->leases.empty());
}

TEST_CASE_FIXTURE(manager_fixture, "a stuck backend does not hold up the "
                                   "expiry of another backend's leases") {
  // The flaky backend serves one call at a time: two revocations at once.
  flaky->failing_revokes = 1'000'000;
  for (int i = 0; i < 50; ++i)
    create_ttl(1'000, false, "flaky");
  auto local = create_ttl(1'000, false, "local");
  advance(1'000ms);
  CHECK(code_of_get(local.id) == ec::not_found);
  CHECK(!stored_lease(storage, local.id)); // revoked and removed
  CHECK(live_count() == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "renew extends, caps at issued + max ttl "
                                   "and says so") {
  mcfg.max_ttl_ms = 10'000;
  start(); // a second manager with a smaller max ttl over the same storage
  auto x = create_ttl(4'000, true);
  advance(3'000ms);
  auto r = renew(x.id, 4'000);
  REQUIRE(r);
  auto [renewed, capped] = *r;
  CHECK(renewed.expires_ms == start_ms + 7'000);
  CHECK(renewed.ttl_ms == 4'000);
  CHECK(!capped);
  advance(3'500ms); // at 6.5 s: 4 s more would pass the 10 s total life
  r = renew(x.id, 4'000);
  REQUIRE(r);
  std::tie(renewed, capped) = *r;
  CHECK(renewed.expires_ms == start_ms + 10'000);
  CHECK(renewed.ttl_ms == 3'500);
  CHECK(capped);
  advance(3'500ms);
  CHECK(code_of_get(x.id) == ec::not_found);
  r = renew(x.id, 4'000);
  CHECK(code_of(r.error()) == ec::not_found);
}

TEST_CASE_FIXTURE(manager_fixture, "renew needs a renewable lease") {
  auto x = create_ttl(4'000, false);
  auto r = renew(x.id, use_default_ttl);
  CHECK(code_of(r.error()) == ec::not_renewable);
}

TEST_CASE_FIXTURE(manager_fixture, "renewed leases expire at the new time") {
  auto x = create_ttl(2'000, true, "flaky");
  advance(1'500ms);
  REQUIRE(renew(x.id, 2'000));
  advance(1'000ms); // past the old deadline
  CHECK(code_of_get(x.id) == ec::none);
  CHECK(flaky->revoked.empty());
  advance(1'000ms);
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(flaky->revoked.size() == 1);
}

TEST_CASE_FIXTURE(manager_fixture, "exchange swaps the value, merges meta") {
  create_request req;
  req.ttl_ms = 10'000;
  req.meta = R"({"a":1,"b":2})";
  auto x = create(req);
  advance(4'000ms);
  auto y = call<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, x.value, std::string{R"({"b":3,"c":4})"}});
  REQUIRE(y);
  CHECK(y->id == x.id);
  CHECK(y->value != x.value);
  CHECK(nlohmann::json::parse(y->meta)
        == nlohmann::json{{"a", 1}, {"b", 3}, {"c", 4}});
  CHECK(y->expires_ms == start_ms + 14'000);
  auto old = call<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, x.value, std::string{"{}"}});
  CHECK(code_of(old.error()) == ec::invalid_token);
  auto stored = stored_lease(storage, x.id);
  CHECK(stored->value == y->value);
}

TEST_CASE_FIXTURE(manager_fixture, "of two racing exchanges one wins") {
  auto x = create_ttl(10'000);
  auto a = send_request<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, x.value, std::string{"{}"}});
  auto b = send_request<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, x.value, std::string{"{}"}});
  sched->run();
  REQUIRE(a->has_value());
  REQUIRE(b->has_value());
  CHECK(static_cast<bool>(**a) != static_cast<bool>(**b));
}

TEST_CASE_FIXTURE(manager_fixture, "exchange rejects expired tokens and "
                                   "oversized merged meta") {
  create_request req;
  req.ttl_ms = 2'000;
  req.meta = nlohmann::json{{"big", std::string(40'000, 'x')}}.dump();
  auto x = create(req);
  auto patch = nlohmann::json{{"more", std::string(40'000, 'y')}}.dump();
  auto big = call<lease>(manager, atom::exchange_v,
                         exchange_request{std::string{}, x.value, patch});
  CHECK(code_of(big.error()) == ec::invalid_request);
  // The rejected merge did not burn the token.
  CHECK(
    call<lease>(manager, atom::exchange_v,
                exchange_request{std::string{}, x.value, std::string{"{}"}}));
  auto y = *call<lease>(manager, atom::get_v, x.id);
  advance(2'000ms);
  auto late = call<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, y.value, std::string{"{}"}});
  CHECK(code_of(late.error()) == ec::invalid_token);
}

TEST_CASE_FIXTURE(manager_fixture, "list pages through every lease once") {
  std::set<std::string> made;
  for (int i = 0; i < 25; ++i) {
    create_request req;
    req.ttl_ms = 60'000;
    if (i % 2 == 0)
      req.tags = {"even"};
    made.insert(create(req).id);
  }
  std::set<std::string> seen;
  list_query q;
  q.limit = 7;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = call<lease_page>(manager, atom::list_v, q);
    REQUIRE(page);
    for (auto& x : page->leases)
      CHECK(seen.insert(x.id).second);
    if (page->next_after.empty())
      break;
    q.after = page->next_after;
  }
  CHECK(seen == made);
  q = list_query{};
  q.tag = "even";
  q.limit = 100;
  CHECK(call<lease_page>(manager, atom::list_v, q)->leases.size() == 13);
}

TEST_CASE_FIXTURE(manager_fixture, "a new manager loads stored leases, "
                                   "revokes the expired, keeps the rest") {
  auto short_lease = create_ttl(1'000, false, "flaky");
  auto long_lease = create_ttl(60'000);
  // The old manager dies; time passes while nobody watches.
  caf::anon_send_exit(manager, caf::exit_reason::kill);
  sched->run();
  advance(5'000ms);
  CHECK(flaky->revoked.empty());
  mcfg.start_wall_ms = start_ms + 5'000;
  start();
  CHECK(flaky->revoked == std::vector<std::string>{short_lease.backend_id});
  CHECK(code_of_get(short_lease.id) == ec::not_found);
  auto kept = call<lease>(manager, atom::get_v, long_lease.id);
  REQUIRE(kept);
  CHECK(kept->value == long_lease.value);
  // The local backend re-learned the token from the record.
  CHECK(call<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{}, long_lease.value, std::string{"{}"}}));
}

TEST_CASE_FIXTURE(manager_fixture, "an expiry storm stays within the "
                                   "revocation limit and revokes all") {
  mcfg.max_concurrent_revocations = 8;
  start();
  for (int i = 0; i < 100; ++i)
    create_ttl(1'000, false, "flaky");
  advance(1'000ms);
  CHECK(flaky->revoked.size() == 100);
  CHECK(flaky->live.empty());
  CHECK(live_count() == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "a remote create stores its intent first, "
                                   "then the active lease") {
  auto x = create_ttl(60'000, false, "flaky");
  auto stored = stored_lease(storage, x.id);
  REQUIRE(stored);
  CHECK(stored->state == state_active);
  CHECK(stored->value == x.value);
}

TEST_CASE_FIXTURE(manager_fixture, "start-up revokes tokens whose creation a "
                                   "crash interrupted, and drops the intent") {
  // The state a crash leaves between "token made" and "lease stored".
  lease intent;
  intent.id = "crashed-lease-id-1";
  intent.backend = "flaky";
  intent.ttl_ms = 60'000;
  intent.issued_ms = start_ms;
  intent.expires_ms = start_ms + 60'000;
  intent.state = state_pending;
  REQUIRE(call<atom::ok>(storage, atom::save_v, intent));
  flaky->live.insert("b-crashed-lease-id-1");
  flaky->live.insert("b-someone-else"); // no intent: not ours to touch
  auto keeper = create_ttl(60'000, false, "flaky");
  start();
  CHECK(flaky->revoked == std::vector<std::string>{"b-crashed-lease-id-1"});
  CHECK(!stored_lease(storage, intent.id));
  CHECK(code_of_get(intent.id) == ec::not_found);
  CHECK(code_of_get(keeper.id) == ec::none);
  CHECK(live_count() == 1);
  // The intent never shows up in list either.
  list_query q;
  CHECK(call<lease_page>(manager, atom::list_v, q)->leases.size() == 1);
}

TEST_CASE_FIXTURE(manager_fixture, "an unreachable backend at start-up keeps "
                                   "the intent and retries later") {
  lease intent;
  intent.id = "crashed-lease-id-2";
  intent.backend = "flaky";
  intent.ttl_ms = 60'000;
  intent.state = state_pending;
  REQUIRE(call<atom::ok>(storage, atom::save_v, intent));
  flaky->live.insert("b-crashed-lease-id-2");
  flaky->failing_revokes = 1;
  start();
  CHECK(flaky->revoked.empty());
  CHECK(stored_lease(storage, intent.id)); // still there
  advance(30'000ms);
  CHECK(flaky->revoked == std::vector<std::string>{"b-crashed-lease-id-2"});
  CHECK(!stored_lease(storage, intent.id));
}

TEST_CASE_FIXTURE(manager_fixture, "retry waits stay within the backoff "
                                   "ceiling of each attempt") {
  auto x = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 2;
  advance(1'000ms); // attempt 1 fails: the next waits at most 1 s
  CHECK(flaky->revoked.empty());
  advance(1'000ms); // attempt 2 fails: the next waits at most 2 s
  CHECK(flaky->revoked.empty());
  CHECK(flaky->failing_revokes == 0);
  advance(2'000ms);
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
}

TEST_CASE_FIXTURE(manager_fixture, "a create whose answer was lost keeps its "
                                   "intent, and the token is found and "
                                   "revoked later") {
  flaky->lose_create_replies = true;
  create_request req;
  req.backend = "flaky";
  req.ttl_ms = 60'000;
  auto res = call<lease>(manager, atom::create_v, req);
  REQUIRE(!res);
  CHECK(code_of(res.error()) == ec::backend_unavailable);
  REQUIRE(flaky->live.size() == 1); // the token exists, no lease holds it
  advance(30'000ms);
  CHECK(flaky->live.empty());
  CHECK(flaky->revoked.size() == 1);
  lease_page page = *call<lease_page>(storage, atom::load_v, std::string{},
                                      uint32_t{100});
  CHECK(page.leases.empty()); // the intent record is gone too
}

TEST_CASE_FIXTURE(manager_fixture, "a lease whose revocation keeps failing "
                                   "becomes irrevocable, visible, and heals") {
  mcfg.max_revoke_attempts = 3;
  mcfg.retry_max_ms = 4'000;
  start();
  auto x = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 1'000'000;
  advance(1'000ms);
  for (int i = 0; i < 10; ++i)
    advance(4'000ms);
  auto shown = call<lease>(manager, atom::get_v, x.id);
  REQUIRE(shown);
  CHECK(shown->state == state_irrevocable);
  CHECK(shown->attempts >= 3);
  CHECK(shown->last_error.find("down for maintenance") != std::string::npos);
  CHECK(call<health_report>(manager, atom::health_v)->irrevocable == 1);
  CHECK(stored_lease(storage, x.id)->state == state_irrevocable);
  list_query q;
  auto page = call<lease_page>(manager, atom::list_v, q);
  REQUIRE(page->leases.size() == 1);
  CHECK(page->leases[0].state == state_irrevocable);
  // The backend comes back: the next retry (every retry_max_ms) wins.
  flaky->failing_revokes = 0;
  advance(4'000ms);
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(call<health_report>(manager, atom::health_v)->irrevocable == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "rejected credentials make a lease "
                                   "irrevocable at once; throttling costs no "
                                   "attempt") {
  auto x = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 1;
  flaky->fail_code = ec::backend_error;
  advance(1'000ms);
  auto shown = call<lease>(manager, atom::get_v, x.id);
  REQUIRE(shown);
  CHECK(shown->state == state_irrevocable);
  CHECK(shown->attempts == 1);
  auto y = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 5;
  flaky->fail_code = ec::overloaded;
  advance(1'000ms);
  advance(2'000ms);
  auto throttled = stored_lease(storage, y.id);
  // Not irrevocable and still stored; a throttled try is no attempt.
  REQUIRE(throttled);
  CHECK(throttled->state == state_revoking);
  CHECK(throttled->attempts == 0);
}

TEST_CASE_FIXTURE(manager_fixture, "a failed expiry revocation is stored as "
                                   "revoking, and its attempts survive a "
                                   "restart") {
  mcfg.max_revoke_attempts = 3;
  mcfg.retry_base_ms = 1'000;
  mcfg.retry_max_ms = 1'000;
  start();
  auto x = create_ttl(1'000, false, "flaky");
  auto y = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 2; // x and y fail once each
  advance(1'000ms);
  auto stored = stored_lease(storage, x.id);
  REQUIRE(stored);
  CHECK(stored->state == state_revoking);
  CHECK(stored->attempts == 1);
  CHECK(stored->last_error.find("down for maintenance") != std::string::npos);
  // A restart carries the count on: two more failures make three.
  caf::anon_send_exit(manager, caf::exit_reason::kill);
  sched->run();
  flaky->failing_revokes = 4; // the start-up try and one retry, each
  start();
  advance(1'000ms);
  auto shown = call<lease>(manager, atom::get_v, x.id);
  REQUIRE(shown);
  CHECK(shown->state == state_irrevocable);
  CHECK(shown->attempts == 3);
}

TEST_CASE_FIXTURE(manager_fixture, "force drops a lease without the backend") {
  auto x = create_ttl(60'000, false, "flaky");
  flaky->failing_revokes = 1'000'000;
  CHECK(!call<atom::ok>(manager, atom::revoke_v, revoke_request{x.id, false}));
  CHECK(call<atom::ok>(manager, atom::revoke_v, revoke_request{x.id, true}));
  CHECK(!stored_lease(storage, x.id));
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(flaky->revoked.empty()); // the backend never confirmed
  CHECK(
    code_of(call<atom::ok>(manager, atom::revoke_v, revoke_request{x.id, true})
              .error())
    == ec::not_found);
}

TEST_CASE_FIXTURE(manager_fixture, "a revoke the backend did not confirm "
                                   "survives a restart: the lease stays dead") {
  auto x = create_ttl(60'000, false, "flaky");
  flaky->failing_revokes = 1'000'000;
  CHECK(!call<atom::ok>(manager, atom::revoke_v, revoke_request{x.id, false}));
  CHECK(stored_lease(storage, x.id)->state == state_revoking);
  caf::anon_send_exit(manager, caf::exit_reason::kill);
  sched->run();
  flaky->failing_revokes = 0;
  start();
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(flaky->revoked == std::vector<std::string>{x.backend_id});
  CHECK(!stored_lease(storage, x.id));
}

TEST_CASE_FIXTURE(manager_fixture, "unreadable stored records are "
                                   "quarantined, never fatal to a start") {
  // SQLite keeps whatever a damaged file holds; the memory store refuses it.
  char dir[] = "/tmp/tlm-quarantine-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  auto db = make_storage_backend(std::string{"sqlite:"} + dir + "/t.db");
  REQUIRE(db);
  storage = own(spawn_storage_actor(
    *sys, std::make_unique<inline_storage>(std::move(*db))));
  mcfg.storage = storage;
  start();
  auto good = create_ttl(60'000);
  lease bad;
  bad.id = "bad-record-id-0001";
  bad.backend = "flaky";
  bad.backend_id = "b-x";
  bad.state = "exploded";
  REQUIRE(call<atom::ok>(storage, atom::save_v, bad));
  lease no_meta = bad;
  no_meta.id = "bad-record-id-0002";
  no_meta.state = state_active;
  no_meta.meta = "[1,2]";
  REQUIRE(call<atom::ok>(storage, atom::save_v, no_meta));
  start();
  auto health = call<health_report>(manager, atom::health_v);
  CHECK(health->quarantined == 2);
  CHECK(health->live == 1);
  CHECK(code_of_get(good.id) == ec::none);
  CHECK(stored_lease(storage, bad.id)); // kept aside, untouched
  std::filesystem::remove_all(dir);
}

TEST_CASE_FIXTURE(manager_fixture, "flush answers once no revocation is in "
                                   "flight") {
  CHECK(call<atom::ok>(manager, atom::flush_v));
  create_ttl(1'000, false, "flaky");
  advance(1'000ms);
  CHECK(call<atom::ok>(manager, atom::flush_v));
}

TEST_CASE_FIXTURE(manager_fixture, "a renew racing a revoke never brings the "
                                   "record back") {
  auto x = create_ttl(60'000, true, "flaky");
  // Both requests are in the manager's mailbox before either finishes.
  auto renewed = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                       x.id, int64_t{30'000});
  auto revoked = send_request<atom::ok>(manager, atom::revoke_v,
                                        revoke_request{x.id, false});
  sched->run();
  REQUIRE(revoked->has_value());
  CHECK(**revoked);
  REQUIRE(renewed->has_value());
  CHECK(!stored_lease(storage, x.id));
  start(); // a restart finds nothing to revive
  CHECK(code_of_get(x.id) == ec::not_found);
}

namespace {

lease create_tagged(manager_fixture& f, const std::string& backend,
                    const std::string& tag, int64_t ttl = 60'000) {
  create_request req;
  req.backend = backend;
  req.ttl_ms = ttl;
  req.tags = {tag};
  return f.create(req);
}

caf::expected<job_status> start_job(manager_fixture& f, std::string backend,
                                    std::string tag) {
  return f.call<job_status>(f.manager, atom::revoke_v, atom::job_v, backend,
                            tag);
}

} // namespace

TEST_CASE_FIXTURE(manager_fixture, "revoke_prefix revokes every matching "
                                   "lease in a background job") {
  std::vector<lease> blue, red;
  for (int i = 0; i < 5; ++i)
    blue.push_back(create_tagged(*this, "local", "blue"));
  for (int i = 0; i < 2; ++i)
    blue.push_back(create_tagged(*this, "flaky", "blue"));
  for (int i = 0; i < 3; ++i)
    red.push_back(create_tagged(*this, "local", "red"));
  auto job = start_job(*this, "", "blue");
  REQUIRE(job);
  CHECK(job->job.total == 7);
  CHECK(job->job.id.size() == 22);
  auto status = call<job_status>(manager, atom::job_v, job->job.id);
  REQUIRE(status);
  CHECK(status->job.state == job_state::done);
  CHECK(status->progress.remaining == 0);
  CHECK(status->job.finished_ms >= status->job.created_ms);
  for (auto& x : blue) {
    CHECK(code_of_get(x.id) == ec::not_found);
    CHECK(!stored_lease(storage, x.id));
  }
  for (auto& x : red)
    CHECK(code_of_get(x.id) == ec::none);
  CHECK(flaky->revoked.size() == 2);
  // Both filters at once: only local leases tagged red.
  create_tagged(*this, "flaky", "red");
  auto both = start_job(*this, "local", "red");
  REQUIRE(both);
  CHECK(both->job.total == 3);
  CHECK(live_count() == 1);
  auto stored = call<std::vector<revoke_job>>(storage, atom::load_v,
                                              atom::job_v);
  REQUIRE(stored);
  REQUIRE(stored->size() == 2);
  for (auto& j : *stored)
    CHECK(j.state == job_state::done);
}

TEST_CASE_FIXTURE(manager_fixture, "revoke_prefix refuses what it cannot "
                                   "do") {
  CHECK(code_of(start_job(*this, "", "").error()) == ec::invalid_request);
  CHECK(code_of(start_job(*this, "nope", "").error()) == ec::unknown_backend);
  CHECK(
    code_of(call<job_status>(manager, atom::job_v, std::string{"x"}).error())
    == ec::not_found);
  auto empty = start_job(*this, "", "no-such-tag");
  REQUIRE(empty);
  CHECK(empty->job.total == 0);
  CHECK(empty->job.state == job_state::done);
}

TEST_CASE_FIXTURE(manager_fixture, "a revoke job survives a restart and "
                                   "spares leases issued after it began") {
  mcfg.retry_base_ms = 1'000;
  mcfg.retry_max_ms = 2'000;
  start();
  std::vector<lease> doomed;
  for (int i = 0; i < 3; ++i)
    doomed.push_back(create_tagged(*this, "flaky", "x"));
  auto spared = create_tagged(*this, "flaky", "y");
  flaky->failing_revokes = 1'000'000;
  auto job = start_job(*this, "flaky", "x");
  REQUIRE(job);
  CHECK(job->job.total == 3);
  // Same millisecond as the job, but after it: not part of it.
  auto newer = create_tagged(*this, "flaky", "x");
  auto running = call<job_status>(manager, atom::job_v, job->job.id);
  CHECK(running->job.state == job_state::running);
  CHECK(running->progress.remaining == 3);
  for (auto& x : doomed) {
    CHECK(code_of_get(x.id) == ec::not_found); // dead at the API at once
    CHECK(stored_lease(storage, x.id)->state == state_revoking);
  }
  list_query q;
  CHECK(call<lease_page>(manager, atom::list_v, q)->leases.size() == 2);
  // A crash while the backend is down; it comes back with the restart.
  caf::anon_send_exit(manager, caf::exit_reason::kill);
  sched->run();
  flaky->failing_revokes = 0;
  start();
  auto after = call<job_status>(manager, atom::job_v, job->job.id);
  REQUIRE(after);
  CHECK(after->job.state == job_state::done);
  CHECK(after->job.total == 3);
  CHECK(after->progress.remaining == 0);
  std::set<std::string> revoked(flaky->revoked.begin(), flaky->revoked.end());
  for (auto& x : doomed)
    CHECK(revoked.count(x.backend_id) == 1);
  CHECK(code_of_get(newer.id) == ec::none);
  CHECK(code_of_get(spared.id) == ec::none);
}

TEST_CASE_FIXTURE(manager_fixture, "a revoke job counts irrevocable leases "
                                   "and finishes when they heal") {
  mcfg.max_revoke_attempts = 2;
  mcfg.retry_max_ms = 2'000;
  start();
  auto x = create_tagged(*this, "flaky", "z");
  auto y = create_tagged(*this, "local", "z");
  flaky->failing_revokes = 1'000'000;
  auto job = start_job(*this, "", "z");
  REQUIRE(job);
  for (int i = 0; i < 5; ++i)
    advance(2'000ms);
  auto stuck = call<job_status>(manager, atom::job_v, job->job.id);
  CHECK(stuck->job.state == job_state::running);
  CHECK(stuck->progress.remaining == 1);
  CHECK(stuck->progress.irrevocable == 1);
  CHECK(call<lease>(manager, atom::get_v, x.id)->state == state_irrevocable);
  flaky->failing_revokes = 0;
  advance(2'000ms);
  auto healed = call<job_status>(manager, atom::job_v, job->job.id);
  CHECK(healed->job.state == job_state::done);
  CHECK(healed->progress.irrevocable == 0);
  CHECK(code_of_get(y.id) == ec::not_found);
}

TEST_CASE_FIXTURE(manager_fixture, "finished revoke jobs are kept a day, "
                                   "then forgotten here and in storage") {
  create_tagged(*this, "local", "old");
  auto old_job = start_job(*this, "", "old");
  REQUIRE(old_job);
  CHECK(call<job_status>(manager, atom::job_v, old_job->job.id)->job.state
        == job_state::done);
  advance(std::chrono::hours(23));
  CHECK(call<job_status>(manager, atom::job_v, old_job->job.id));
  advance(std::chrono::hours(2));
  create_tagged(*this, "local", "new", 3'600'000);
  auto new_job = start_job(*this, "", "new");
  REQUIRE(new_job);
  CHECK(code_of(call<job_status>(manager, atom::job_v, old_job->job.id).error())
        == ec::not_found);
  auto stored = call<std::vector<revoke_job>>(storage, atom::load_v,
                                              atom::job_v);
  REQUIRE(stored);
  REQUIRE(stored->size() == 1);
  CHECK(stored->front().id == new_job->job.id);
}

// -- updates of one lease that race each other --------------------------------

namespace {

/// The answers of a cloud actor, held back until the test releases them.
/// The backend does its work when a request comes, as a remote one would;
/// only the answer waits (a slow network), so a test picks the order in
/// which the manager hears of each call.
struct reply_gate {
  std::set<std::string> holding; ///< "renew", "exchange", "revoke"
  std::vector<std::function<void()>> held;

  /// Runs in the gate actor: a promise delivered from outside an actor
  /// crashes on the test coordinator.
  void release(size_t i) {
    auto answer = std::move(held.at(i));
    held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    answer();
  }

  template <class T>
  void answer(caf::event_based_actor* self, const char* kind,
              caf::expected<T> x) {
    auto rp = self->make_response_promise<T>();
    auto reply = [rp, x]() mutable {
      if (x)
        rp.deliver(std::move(*x));
      else
        rp.deliver(x.error());
    };
    if (holding.count(kind) != 0)
      held.push_back(reply);
    else
      reply();
  }
};

caf::expected<atom::ok> ok_unless(caf::error err) {
  if (err)
    return err;
  return atom::ok_v;
}

/// A `cloud_actor` (dynamically typed, for the extra `release` message).
caf::behavior gated_cloud(caf::event_based_actor* self,
                          std::shared_ptr<cloud_backend> be,
                          std::shared_ptr<reply_gate> gate) {
  return {
    [=](atom::create, const token_request& req) {
      gate->answer(
        self, "create",
        be->create(req.lease_id, req.ttl_ms, nlohmann::json::object()));
    },
    [=](atom::revoke, const std::string& id) {
      gate->answer(self, "revoke", ok_unless(be->revoke(id)));
    },
    [=](atom::renew, const std::string& id, int64_t ttl) {
      gate->answer(self, "renew", ok_unless(be->renew(id, ttl)));
    },
    [=](atom::get_all) { gate->answer(self, "get_all", be->get_all()); },
    [=](atom::lookup, const std::string& value) {
      gate->answer(self, "lookup", be->lookup(value));
    },
    [=](atom::exchange, const token_swap& swap) {
      gate->answer(self, "exchange", be->exchange(swap.backend_id, swap.value));
    },
    [=](atom::adopt, const std::vector<cloud_token>& tokens) {
      be->adopt(tokens);
    },
    [=](atom::describe) { return be->describe(); },
    // The test's release of the i-th held answer.
    [=](atom::flush, uint64_t i) { gate->release(i); },
  };
}

/// A manager with a `local` backend named "gated" whose answers the test
/// holds and releases.
struct race_fixture : manager_fixture {
  std::shared_ptr<reply_gate> gate = std::make_shared<reply_gate>();
  caf::actor gated;

  race_fixture() {
    mcfg.backends.push_back({"gated", gated_backend(), true});
    restart();
  }

  cloud_actor gated_backend() {
    gated = own(sys->spawn(
      gated_cloud, *make_local_backend("gated", {{"type", "local"}}), gate));
    return caf::actor_cast<cloud_actor>(gated);
  }

  /// Sends the i-th held answer (once the scheduler runs the gate).
  void release(size_t i) {
    caf::anon_send(gated, atom::flush_v, uint64_t{i});
  }

  /// A crash, then a new process over the same storage: the new backend
  /// knows only the tokens it relearns from the stored records.
  void restart() {
    gate->holding.clear();
    gate->held.clear();
    caf::anon_send_exit(manager, caf::exit_reason::kill);
    sched->run();
    for (auto& be : mcfg.backends)
      if (be.name == "gated")
        be.actor = gated_backend();
    start();
  }

  caf::expected<lease> exchange(const std::string& value,
                                std::string meta = "{}") {
    return call<lease>(manager, atom::exchange_v,
                       exchange_request{std::string{"gated"}, value, meta});
  }

  /// The manager and the storage both hold what `want` says.
  void check_stored(const lease& want) {
    auto shown = call<lease>(manager, atom::get_v, want.id);
    auto stored = stored_lease(storage, want.id);
    REQUIRE(shown);
    REQUIRE(stored);
    for (auto* x : {&*shown, &*stored}) {
      CHECK(x->value == want.value);
      CHECK(x->meta == want.meta);
      CHECK(x->ttl_ms == want.ttl_ms);
      CHECK(x->expires_ms == want.expires_ms);
    }
  }

  /// After a restart only `fresh` is accepted; `used` stays burned.
  void check_only_accepted_after_restart(const std::string& used,
                                         const std::string& fresh) {
    restart();
    auto old = exchange(used);
    REQUIRE(!old);
    CHECK(code_of(old.error()) == ec::invalid_token);
    CHECK(exchange(fresh));
  }
};

} // namespace

TEST_CASE_FIXTURE(race_fixture, "a renew answered after an exchange extends "
                                "the exchanged lease and never stores the "
                                "burned value") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"renew"};
  auto renewed = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                       x.id, int64_t{30'000});
  sched->run(); // renewed at the backend; the answer is on its way
  REQUIRE(gate->held.size() == 1);
  advance(1'000ms);
  auto y = exchange(x.value, R"({"k":1})");
  REQUIRE(y);
  CHECK(y->value != x.value);
  CHECK(y->expires_ms == start_ms + 11'000);
  release(0);
  sched->run();
  REQUIRE(renewed->has_value());
  REQUIRE(**renewed);
  auto [r, capped] = ***renewed;
  CHECK(!capped);
  CHECK(r.value == y->value); // the reply says what is stored
  CHECK(r.meta == y->meta);
  CHECK(r.ttl_ms == 30'000);
  CHECK(r.expires_ms == start_ms + 30'000);
  check_stored(r);
  check_only_accepted_after_restart(x.value, y->value);
}

TEST_CASE_FIXTURE(race_fixture, "an exchange answered after a renew keeps "
                                "the renewed term and restarts it") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"exchange"};
  auto swapped = send_request<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{"gated"}, x.value, std::string{"{}"}});
  sched->run(); // swapped at the backend; the answer is on its way
  REQUIRE(gate->held.size() == 1);
  auto r = renew(x.id, 30'000);
  REQUIRE(r);
  CHECK(std::get<0>(*r).expires_ms == start_ms + 30'000);
  advance(1'000ms);
  release(0);
  sched->run();
  REQUIRE(swapped->has_value());
  REQUIRE(**swapped);
  auto y = ***swapped;
  CHECK(y.value != x.value);
  CHECK(y.ttl_ms == 30'000); // the renewed term, from the new value on
  CHECK(y.expires_ms == start_ms + 31'000);
  check_stored(y);
  check_only_accepted_after_restart(x.value, y.value);
}

TEST_CASE_FIXTURE(race_fixture, "a renew answered between an exchange's save "
                                "and its commit starts from the exchange") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"exchange", "renew"};
  auto swapped = send_request<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{"gated"}, x.value, std::string{R"({"k":2})"}});
  sched->run();
  auto renewed = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                       x.id, int64_t{30'000});
  sched->run();
  REQUIRE(gate->held.size() == 2);
  // Both answers wait in the manager's mailbox: the renew's is handled
  // after the exchange's save went out and before storage confirmed it.
  release(0);
  release(0);
  sched->run();
  REQUIRE(swapped->has_value());
  REQUIRE(**swapped);
  REQUIRE(renewed->has_value());
  REQUIRE(**renewed);
  auto y = ***swapped;
  auto r = std::get<0>(***renewed);
  CHECK(y.value != x.value);
  CHECK(r.value == y.value);
  CHECK(r.meta == R"({"k":2})");
  CHECK(r.expires_ms == start_ms + 30'000);
  check_stored(r);
  check_only_accepted_after_restart(x.value, y.value);
}

TEST_CASE_FIXTURE(race_fixture, "two renews set the term in the order the "
                                "backend answers, around an exchange") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"renew"};
  auto first = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                     x.id, int64_t{30'000});
  sched->run();
  advance(1'000ms);
  auto second = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                      x.id, int64_t{20'000});
  sched->run();
  REQUIRE(gate->held.size() == 2);
  auto y = exchange(x.value);
  REQUIRE(y);
  release(1); // the second renew is answered first ...
  sched->run();
  REQUIRE(second->has_value());
  REQUIRE(**second);
  auto b = std::get<0>(***second);
  CHECK(b.value == y->value);
  CHECK(b.expires_ms == start_ms + 21'000);
  check_stored(b);
  release(0); // ... and the first one last: its term counts
  sched->run();
  REQUIRE(first->has_value());
  REQUIRE(**first);
  auto a = std::get<0>(***first);
  CHECK(a.value == y->value);
  CHECK(a.ttl_ms == 30'000);
  CHECK(a.expires_ms == start_ms + 30'000);
  check_stored(a);
  check_only_accepted_after_restart(x.value, y->value);
}

TEST_CASE_FIXTURE(race_fixture, "a renew answered after a revoke is refused "
                                "and stores nothing") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"renew"};
  auto renewed = send_request<std::tuple<lease, bool>>(manager, atom::renew_v,
                                                       x.id, int64_t{30'000});
  sched->run();
  REQUIRE(call<atom::ok>(manager, atom::revoke_v, revoke_request{x.id, false}));
  release(0);
  sched->run();
  REQUIRE(renewed->has_value());
  REQUIRE(!**renewed);
  CHECK(code_of((**renewed).error()) == ec::not_found);
  CHECK(!stored_lease(storage, x.id));
  restart();
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(code_of(exchange(x.value).error()) == ec::invalid_token);
}

TEST_CASE_FIXTURE(race_fixture, "a revoke right after an exchange's answer "
                                "stores the exchanged value as revoking") {
  auto x = create_ttl(10'000, true, "gated");
  gate->holding = {"exchange", "revoke"};
  auto swapped = send_request<lease>(
    manager, atom::exchange_v,
    exchange_request{std::string{"gated"}, x.value, std::string{R"({"k":3})"}});
  sched->run();
  REQUIRE(gate->held.size() == 1);
  release(0);
  sched->run_once(); // the gate answers
  // The revoke waits right behind the answer, so it comes before storage
  // confirms the exchange's save (its own reply is of no interest here).
  caf::anon_send(manager, atom::revoke_v, revoke_request{x.id, false});
  sched->run(); // the revoke is stored, its backend's answer held
  REQUIRE(gate->held.size() == 1);
  auto stored = stored_lease(storage, x.id);
  REQUIRE(stored);
  CHECK(stored->state == state_revoking);
  CHECK(stored->value != x.value);
  CHECK(stored->meta == R"({"k":3})");
  REQUIRE(swapped->has_value());
  if (**swapped) // the swap is stored, whichever answer its client got
    CHECK((**swapped)->value == stored->value);
  // A crash with the revocation in flight: it is finished at the start.
  restart();
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(!stored_lease(storage, x.id));
  CHECK(code_of(exchange(x.value).error()) == ec::invalid_token);
  CHECK(code_of(exchange(stored->value).error()) == ec::invalid_token);
}

namespace {

/// Whether `text` is well-formed UTF-8 (no cut or stray byte).
bool valid_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t n = c < 0x80           ? 1
               : (c >> 5) == 0x6  ? 2
               : (c >> 4) == 0xE  ? 3
               : (c >> 3) == 0x1E ? 4
                                  : 0;
    if (n == 0 || i + n > text.size())
      return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80)
        return false;
    i += n;
  }
  return true;
}

} // namespace

TEST_CASE_FIXTURE(manager_fixture, "a backend's reason is kept whole to "
                                   "240 bytes, never cut inside a UTF-8 "
                                   "character") {
  auto x = create_ttl(1'000, false, "flaky");
  flaky->failing_revokes = 1;
  flaky->fail_code = ec::backend_error; // gives up at once: shown by get
  // 239 bytes, then a two-byte character across the 240-byte cut.
  flaky->fail_message = std::string(239, 'x') + "\u00e9 and more";
  advance(1'000ms);
  auto shown = call<lease>(manager, atom::get_v, x.id);
  REQUIRE(shown);
  CHECK(shown->state == state_irrevocable);
  CHECK(shown->last_error.size() <= 240);
  CHECK(valid_utf8(shown->last_error));
  CHECK(shown->last_error == std::string(239, 'x'));
  auto h = call<health_report>(manager, atom::health_v);
  REQUIRE(h);
  for (auto& b : h->backends)
    CHECK(valid_utf8(b.last_error));
}

namespace {

/// The manager's state, to drive it directly (no message in between).
lease_manager_state& state_of(const lease_manager_actor& manager) {
  using impl =
    caf::stateful_actor<lease_manager_state, lease_manager_actor::base>;
  auto* ptr = caf::actor_cast<caf::abstract_actor*>(manager);
  return dynamic_cast<impl&>(*ptr).state;
}

} // namespace

TEST_CASE_FIXTURE(manager_fixture, "health agrees with get at every "
                                   "moment, also before an expiry's tick") {
  auto x = create_ttl(1'000);
  auto y = create_ttl(60'000);
  auto& st = state_of(manager);
  CHECK(st.index.count(lease_phase::active) == 2);
  // Time passes, but the expiry's timer has not fired yet.
  sched->clock().current_time += 1'000ms;
  CHECK(st.index.find(x.id)->second.phase == lease_phase::active);
  CHECK(code_of_get(x.id) == ec::not_found);
  auto report = call<health_report>(manager, atom::health_v);
  REQUIRE(report);
  CHECK(report->live == 1); // gone for health too
  // Health handed it to its lane: revoked, though its timer never fired.
  CHECK(st.index.find(x.id) == nullptr);
  CHECK(code_of_get(y.id) == ec::none);
  sched->clock().trigger_timeouts();
  sched->run();
  CHECK(code_of_get(x.id) == ec::not_found);
  CHECK(live_count() == 1);
  CHECK(st.index.size() == 1); // revoked and forgotten
}

TEST_CASE_FIXTURE(manager_fixture, "a failing storage shows in health, "
                                   "also when nobody waits for the write") {
  auto fail = std::make_shared<bool>(false);
  auto wrapped = std::make_unique<inline_storage>(make_memory_backend());
  wrapped->fail_writes = fail;
  storage = own(spawn_storage_actor(*sys, std::move(wrapped)));
  mcfg.storage = storage;
  start();
  auto x = create_ttl(1'000, false, "flaky");
  CHECK(call<health_report>(manager, atom::health_v)->storage_error.empty());
  // The expiry's writes have no waiting client: only health can tell.
  *fail = true;
  flaky->failing_revokes = 1; // its first failure is saved quietly
  advance(1'000ms);
  auto h = call<health_report>(manager, atom::health_v);
  REQUIRE(h);
  CHECK(h->storage_error == "disk full");
  CHECK(h->degraded());
  CHECK(code_of(call<lease>(manager, atom::create_v, create_request{}).error())
        == ec::storage_error);
  *fail = false;
  create_ttl(60'000);
  h = call<health_report>(manager, atom::health_v);
  CHECK(h->storage_error.empty());
  CHECK(code_of_get(x.id) == ec::not_found);
}

TEST_CASE_FIXTURE(manager_fixture, "a batch answers every call in order, "
                                   "all at once, errors in their slots") {
  auto renewable = create_ttl(60'000, true);
  create_request good;
  good.ttl_ms = 30'000;
  create_request bad;
  bad.backend = "nowhere";
  call_batch batch;
  batch.calls.push_back(good);
  batch.calls.push_back(get_call{renewable.id});
  batch.calls.push_back(bad);
  batch.calls.push_back(renew_call{renewable.id, 120'000});
  batch.calls.push_back(get_call{"missing"});
  batch.calls.push_back(health_call{});
  std::vector<manager_outcome> got;
  int deliveries = 0;
  batch.done = [&](std::vector<manager_outcome> outcomes) {
    ++deliveries;
    got = std::move(outcomes);
  };
  caf::anon_send(manager, atom::batch_v, std::move(batch));
  sched->run();
  REQUIRE(deliveries == 1);
  REQUIRE(got.size() == 6);
  auto* made = std::get_if<lease>(&got[0]);
  REQUIRE(made != nullptr);
  CHECK(made->ttl_ms == 30'000);
  CHECK(code_of_get(made->id) == ec::none); // stored and live
  REQUIRE(std::holds_alternative<lease>(got[1]));
  CHECK(std::get<lease>(got[1]).id == renewable.id);
  REQUIRE(std::holds_alternative<caf::error>(got[2]));
  CHECK(code_of(std::get<caf::error>(got[2])) == ec::unknown_backend);
  REQUIRE(std::holds_alternative<renewed>(got[3]));
  CHECK(std::get<renewed>(got[3]).x.ttl_ms == 120'000);
  REQUIRE(std::holds_alternative<caf::error>(got[4]));
  CHECK(code_of(std::get<caf::error>(got[4])) == ec::not_found);
  REQUIRE(std::holds_alternative<health_report>(got[5]));
  // Calls start in order but finish as their backends answer: health ran
  // before the create's token and save came back. A front end therefore
  // puts a call that must see an earlier one's effect into the next batch
  // (api/request_order.hpp).
  CHECK(std::get<health_report>(got[5]).live == 1);
  CHECK(live_count() == 2);
}

TEST_CASE("a batch slot dropped unanswered answers with an internal error") {
  std::vector<manager_outcome> got;
  {
    auto answers = std::make_shared<batch_answers>(
      2, [&](std::vector<manager_outcome> outcomes) {
        got = std::move(outcomes);
      });
    reply<atom::ok> first{answers, 0};
    first.deliver(atom::ok_v);
    CHECK(!first.pending());
    reply<lease> second{answers, 1};
    CHECK(second.pending());
    CHECK(got.empty()); // not before every slot is answered
  }
  REQUIRE(got.size() == 2);
  CHECK(std::holds_alternative<atom::ok>(got[0]));
  REQUIRE(std::holds_alternative<caf::error>(got[1]));
  CHECK(code_of(std::get<caf::error>(got[1])) == ec::internal);
}
