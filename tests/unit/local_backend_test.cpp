// The local one-time-token backend through its actor.

#include <nlohmann/json.hpp>

#include "actors/interfaces.hpp"
#include "cloud_backends/cloud_actor.hpp"
#include "cloud_backends/local/local_backend.hpp"
#include "core/error.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace tlm;

namespace {

struct local_fixture : test::actor_fixture {
  cloud_actor cloud = own(
    spawn_cloud_actor(*sys, *make_local_backend("local", {{"type", "local"}})));

  cloud_token create(const std::string& id) {
    auto t = call<cloud_token>(cloud, atom::create_v,
                               token_request{id, 1000, "{}", 0});
    REQUIRE(t);
    return *t;
  }
};

} // namespace

TEST_CASE_FIXTURE(local_fixture, "tokens are long, random and url-safe") {
  auto a = create("lease-a");
  auto b = create("lease-b");
  CHECK(a.value.size() >= 8 + 43); // the lease id, a dot, 256 bits
  CHECK(a.value.rfind("lease-a.", 0) == 0);
  CHECK(a.value != b.value);
  CHECK(a.value.find_first_of("+/=") == std::string::npos);
  CHECK(a.backend_id == "lease-a");
}

TEST_CASE_FIXTURE(local_fixture, "a value with the right id but another "
                                 "secret is no token") {
  auto a = create("lease-a");
  auto forged = a.value;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  for (auto& bad : {forged, std::string{"lease-a"}, std::string{"lease-a."},
                    std::string{".x"}, std::string{"no-such.x"}}) {
    CAPTURE(bad);
    CHECK(code_of(call<std::string>(cloud, atom::lookup_v, bad).error())
          == ec::invalid_token);
    CHECK(code_of(call<cloud_token>(cloud, atom::exchange_v,
                                    token_swap{"lease-a", bad})
                    .error())
          == ec::invalid_token);
  }
  CHECK(*call<std::string>(cloud, atom::lookup_v, a.value) == "lease-a");
}

TEST_CASE_FIXTURE(local_fixture, "exchange issues a fresh value once") {
  auto a = create("lease-a");
  auto id = call<std::string>(cloud, atom::lookup_v, a.value);
  REQUIRE(id);
  CHECK(*id == "lease-a");
  auto fresh = call<cloud_token>(cloud, atom::exchange_v,
                                 token_swap{*id, a.value});
  REQUIRE(fresh);
  CHECK(fresh->value != a.value);
  auto again = call<cloud_token>(cloud, atom::exchange_v,
                                 token_swap{*id, a.value});
  CHECK(code_of(again.error()) == ec::invalid_token);
  CHECK(code_of(call<std::string>(cloud, atom::lookup_v, a.value).error())
        == ec::invalid_token);
  CHECK(*call<std::string>(cloud, atom::lookup_v, fresh->value) == "lease-a");
}

TEST_CASE_FIXTURE(local_fixture, "revoke is idempotent and kills the value") {
  auto a = create("lease-a");
  CHECK(call<atom::ok>(cloud, atom::revoke_v, std::string{"lease-a"}));
  CHECK(call<atom::ok>(cloud, atom::revoke_v, std::string{"lease-a"}));
  CHECK(call<std::vector<cloud_token>>(cloud, atom::get_all_v)->empty());
  CHECK(!call<std::string>(cloud, atom::lookup_v, a.value));
}

TEST_CASE_FIXTURE(local_fixture, "adopted tokens are known again") {
  caf::anon_send(cloud, atom::adopt_v,
                 std::vector<cloud_token>{{"old", "old.value", "{}", "old"}});
  sched->run();
  CHECK(*call<std::string>(cloud, atom::lookup_v, std::string{"old.value"})
        == "old");
  auto all = call<std::vector<cloud_token>>(cloud, atom::get_all_v);
  CHECK(all->size() == 1);
}

TEST_CASE_FIXTURE(local_fixture, "unknown options are invalid_request") {
  auto t = call<cloud_token>(cloud, atom::create_v,
                             token_request{"x", 1000, R"({"db":"y"})", 0});
  CHECK(code_of(t.error()) == ec::invalid_request);
}

TEST_CASE_FIXTURE(local_fixture, "a create past its caller's deadline is "
                                 "refused and makes nothing") {
  // Deadlines are on the actor clock: simulated time here.
  auto deadline = deadline_after(sys->clock(), std::chrono::seconds(5));
  sched->advance_time(std::chrono::seconds(6));
  auto late = call<cloud_token>(cloud, atom::create_v,
                                token_request{"late", 1000, "{}", deadline});
  CHECK(code_of(late.error()) == ec::backend_unavailable);
  CHECK(call<std::vector<cloud_token>>(cloud, atom::get_all_v)->empty());
  deadline = deadline_after(sys->clock(), std::chrono::seconds(5));
  auto t = call<cloud_token>(cloud, atom::create_v,
                             token_request{"late", 1000, "{}", deadline});
  REQUIRE(t);
  CHECK(t->backend_id == "late");
}

TEST_CASE("with shared leases the backend keeps nothing: the stored lease "
          "decides") {
  // Several instances: any of them must check a value another one made,
  // so the backend only makes values and reads the lease id from them.
  auto backend = *make_local_backend("local", {{"type", "local"}});
  backend->share_leases();
  auto made = backend->create("lease-s", 1000, nlohmann::json::object());
  REQUIRE(made);
  CHECK(made->value.rfind("lease-s.", 0) == 0);
  CHECK(backend->get_all()->empty());
  // Any value of the right shape names its lease; whether it is the live
  // one is the stored lease's to say.
  CHECK(*backend->lookup("lease-s.not-the-secret") == "lease-s");
  CHECK(code_of(backend->lookup("no-dot").error()) == ec::invalid_token);
  auto fresh = backend->exchange("lease-s", made->value);
  REQUIRE(fresh);
  CHECK(fresh->value != made->value);
  CHECK(fresh->value.rfind("lease-s.", 0) == 0);
  CHECK(backend->describe().find("shared storage") != std::string::npos);
}
