#include <doctest/doctest.h>

#include "tlm/renewal_math.hpp"

using namespace tlm;
using namespace std::chrono_literals;

namespace {

const wall_time t0 = wall_time{std::chrono::seconds{1'800'000'000}};

milliseconds offset(wall_time t) {
  return std::chrono::duration_cast<milliseconds>(t - t0);
}

} // namespace

TEST_SUITE_BEGIN("renewal_math");

TEST_CASE("without jitter a lease refreshes at its stale fraction") {
  renewal_timing t;
  t.stale_fraction = 0.75;
  t.jitter_fraction = 0.0;
  CHECK(offset(refresh_time(t, t0, t0 + 60s, 0.9)) == 45000ms);
}

TEST_CASE("jitter moves the refresh earlier, never later, within its window") {
  renewal_timing t;
  t.stale_fraction = 0.75;
  t.jitter_fraction = 0.25;
  CHECK(offset(refresh_time(t, t0, t0 + 60s, 0.0)) == 45000ms);
  CHECK(offset(refresh_time(t, t0, t0 + 60s, 0.5)) == 37500ms);
  // u < 1, so the earliest is just after start + (stale - jitter) * term.
  CHECK(offset(refresh_time(t, t0, t0 + 60s, 0.999999)) >= 30000ms);
  CHECK(offset(refresh_time(t, t0, t0 + 60s, 0.999999)) < 30001ms);
}

TEST_CASE("different draws give different refresh moments") {
  renewal_timing t;
  t.jitter_fraction = 0.2;
  auto a = refresh_time(t, t0, t0 + 10s, 0.1);
  auto b = refresh_time(t, t0, t0 + 10s, 0.9);
  auto apart = offset(a) - offset(b); // 0.8 of the 2 s window
  CHECK(apart >= 1599ms);
  CHECK(apart <= 1601ms);
}

TEST_CASE("a lease already expired refreshes at once") {
  renewal_timing t;
  CHECK(refresh_time(t, t0, t0 - 1s, 0.5) == t0);
}

TEST_CASE("backoff doubles its window from the base up to the max") {
  renewal_timing t;
  t.backoff_base = 500ms;
  t.backoff_max = 4000ms;
  t.backoff_floor = 0ms;
  // u just below 1 shows the window's top.
  CHECK(backoff_delay(t, 1, 0.999) == 499ms);
  CHECK(backoff_delay(t, 2, 0.999) == 999ms);
  CHECK(backoff_delay(t, 3, 0.999) == 1998ms);
  CHECK(backoff_delay(t, 4, 0.999) == 3996ms);
  CHECK(backoff_delay(t, 5, 0.999) == 3996ms);
  CHECK(backoff_delay(t, 1000, 0.999) == 3996ms);
}

TEST_CASE("full jitter: the delay is the draw times the window") {
  renewal_timing t;
  t.backoff_base = 1000ms;
  t.backoff_max = 30000ms;
  t.backoff_floor = 0ms;
  CHECK(backoff_delay(t, 3, 0.0) == 0ms);
  CHECK(backoff_delay(t, 3, 0.25) == 1000ms);
  CHECK(backoff_delay(t, 3, 0.5) == 2000ms);
}

TEST_CASE("a zero draw still waits the floor, so retries never spin") {
  renewal_timing t;
  t.backoff_floor = 10ms;
  CHECK(backoff_delay(t, 1, 0.0) == 10ms);
  CHECK(backoff_delay(t, 0, 0.0) == 10ms);
}

TEST_CASE("check_timing names the setting that is out of range") {
  renewal_timing t;
  CHECK(check_timing(t).empty());
  t.stale_fraction = 0;
  CHECK(check_timing(t).find("stale") != std::string::npos);
  t = renewal_timing{};
  t.jitter_fraction = 0.8;
  CHECK(check_timing(t).find("jitter") != std::string::npos);
  t = renewal_timing{};
  t.backoff_max = 100ms;
  CHECK(check_timing(t).find("backoff max") != std::string::npos);
}

TEST_SUITE_END();
