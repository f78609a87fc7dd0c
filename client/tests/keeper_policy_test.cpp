// The keeper's schedule on a fake clock: no thread, no sleep.

#include <doctest/doctest.h>

#include "fake_clock.hpp"
#include "tlm/keeper_policy.hpp"

using namespace tlm;
using namespace std::chrono_literals;

namespace {

lease lease_for(test::fake_clock& clock, std::chrono::milliseconds term,
                std::string backend = "influx", bool renewable = true) {
  lease x;
  x.id = "L1";
  x.backend = std::move(backend);
  x.value = "secret";
  x.ttl_ms = term.count();
  x.issued = clock.now();
  x.expires = clock.now() + term;
  x.renewable = renewable;
  return x;
}

renewal_timing timing() {
  renewal_timing t;
  t.stale_fraction = 0.75;
  t.jitter_fraction = 0.25;
  t.backoff_base = 1000ms;
  t.backoff_max = 8000ms;
  t.backoff_floor = 0ms;
  return t;
}

std::chrono::milliseconds until(test::fake_clock& clock, wall_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t - clock.now());
}

} // namespace

TEST_SUITE_BEGIN("keeper_policy");

TEST_CASE("an empty keeper creates at once") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.start_empty();
  CHECK(p.next_action() == keeper_action::create);
  CHECK(p.next_time() == clock.now());
}

TEST_CASE("a renewable lease is renewed when stale, moved by the draw") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  clock.draw(0.0);
  p.on_lease(lease_for(clock, 60s));
  CHECK(p.next_action() == keeper_action::renew);
  CHECK(until(clock, p.next_time()) == 45000ms);
  clock.draw(1.0 - 1e-9);
  p.on_lease(lease_for(clock, 60s));
  CHECK(until(clock, p.next_time()) == 30000ms);
}

TEST_CASE("many keepers with their own draws renew at different moments") {
  test::fake_clock clock;
  std::vector<std::chrono::milliseconds> moments;
  for (double u : {0.05, 0.35, 0.65, 0.95}) {
    keeper_policy p{timing(), true, clock};
    clock.draw(u);
    p.on_lease(lease_for(clock, 40s));
    moments.push_back(until(clock, p.next_time()));
  }
  for (size_t i = 1; i < moments.size(); ++i)
    CHECK(moments[i] < moments[i - 1]);
  CHECK(moments.front() - moments.back() == 9000ms); // 0.9 of the 10 s window
}

TEST_CASE("a local token is exchanged instead of renewed") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.on_lease(lease_for(clock, 10s, "local", false));
  CHECK(p.next_action() == keeper_action::exchange);
}

TEST_CASE("transient failures back off exponentially, bounded, and reset") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.on_lease(lease_for(clock, 60s));
  clock.advance(45s);
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 6; ++i) {
    clock.draw(0.999);
    p.on_failure({errc::connection_failed, "refused"});
    CHECK(p.next_action() == keeper_action::renew);
    CHECK(p.failed_attempts() == i + 1);
    waits.push_back(until(clock, p.next_time()));
    clock.advance(waits.back());
  }
  CHECK(waits[0] == 999ms);
  CHECK(waits[1] == 1998ms);
  CHECK(waits[2] == 3996ms);
  CHECK(waits[3] == 7992ms);
  CHECK(waits[4] == 7992ms); // capped at backoff_max
  clock.draw(0.0);
  p.on_lease(lease_for(clock, 60s));
  CHECK(p.failed_attempts() == 0);
  CHECK(until(clock, p.next_time()) == 45000ms);
}

TEST_CASE("a lease the server no longer has is replaced at once") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.on_lease(lease_for(clock, 60s));
  clock.advance(45s);
  for (auto code :
       {errc::not_found, errc::not_renewable, errc::invalid_token}) {
    p.on_lease(lease_for(clock, 60s));
    p.on_failure({code, "gone"});
    CHECK(p.next_action() == keeper_action::create);
    CHECK(p.next_time() == clock.now());
    CHECK(p.failed_attempts() == 0);
  }
}

TEST_CASE("without recreate a lost lease stops the keeper, saying why") {
  test::fake_clock clock;
  keeper_policy p{timing(), false, clock};
  p.on_lease(lease_for(clock, 60s));
  p.on_failure({errc::not_found, "no live lease has this token_id"});
  CHECK(p.next_action() == keeper_action::idle);
  CHECK(p.lost().find("no live lease") != std::string::npos);
}

TEST_CASE("a capped lease is replaced at its stale point, or left to expire") {
  test::fake_clock clock;
  keeper_policy with{timing(), true, clock};
  clock.draw(0.0);
  with.on_lease(lease_for(clock, 8s), true);
  CHECK(with.next_action() == keeper_action::create);
  CHECK(until(clock, with.next_time()) == 6000ms);
  keeper_policy without{timing(), false, clock};
  without.on_lease(lease_for(clock, 8s), true);
  CHECK(without.next_action() == keeper_action::idle);
  CHECK(until(clock, without.next_time()) == 8000ms);
  CHECK(without.lost().find("total-life cap") != std::string::npos);
}

TEST_CASE("a lease created not renewable is replaced when stale") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.on_lease(lease_for(clock, 8s, "influx", false));
  CHECK(p.next_action() == keeper_action::create);
}

TEST_CASE("a failing create backs off too") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.start_empty();
  clock.draw(0.5);
  p.on_failure({errc::backend_unavailable, "influx down"});
  CHECK(p.next_action() == keeper_action::create);
  CHECK(until(clock, p.next_time()) == 500ms);
}

TEST_CASE("a failure that cannot heal stops retrying") {
  test::fake_clock clock;
  keeper_policy p{timing(), true, clock};
  p.start_empty();
  p.on_failure({errc::unauthorized, "API key refused"});
  CHECK(p.next_action() == keeper_action::idle);
  CHECK(p.lost().find("unauthorized") != std::string::npos);
  CHECK(p.lost().find("API key refused") != std::string::npos);
}

TEST_SUITE_END();
