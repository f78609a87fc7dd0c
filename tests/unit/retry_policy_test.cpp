#include <doctest/doctest.h>

#include <random>

#include "actors/retry_policy.hpp"

using namespace tlm;

TEST_CASE("a throttled backend costs no attempt") {
  CHECK(!counts_as_attempt(ec::overloaded));
  CHECK(counts_as_attempt(ec::backend_unavailable));
  CHECK(counts_as_attempt(ec::backend_error));
}

TEST_CASE("rejected credentials and a missing backend are hopeless") {
  CHECK(hopeless(ec::backend_error));
  CHECK(hopeless(ec::unknown_backend));
  CHECK(!hopeless(ec::backend_unavailable));
  CHECK(!hopeless(ec::overloaded));
  retry_settings s;
  s.max_attempts = 3;
  CHECK(gives_up(s, ec::backend_error, 1));
  CHECK(!gives_up(s, ec::backend_unavailable, 2));
  CHECK(gives_up(s, ec::backend_unavailable, 3));
}

TEST_CASE("the backoff ceiling doubles from base and stops at max") {
  retry_settings s{1'000, 300'000, 10};
  CHECK(backoff_ceiling(s, 0) == 1'000);
  CHECK(backoff_ceiling(s, 1) == 1'000);
  CHECK(backoff_ceiling(s, 2) == 2'000);
  CHECK(backoff_ceiling(s, 5) == 16'000);
  CHECK(backoff_ceiling(s, 9) == 256'000);
  CHECK(backoff_ceiling(s, 10) == 300'000);
  CHECK(backoff_ceiling(s, 1'000) == 300'000); // no overflow
}

TEST_CASE("retry delays are full jitter within the ceiling") {
  retry_settings s{1'000, 300'000, 10};
  std::minstd_rand random{42};
  int64_t lowest = INT64_MAX, highest = 0;
  for (int i = 0; i < 2'000; ++i) {
    auto d = retry_delay(s, 3, false, random);
    CHECK(d >= 1);
    CHECK(d <= 4'000);
    lowest = std::min(lowest, d);
    highest = std::max(highest, d);
  }
  CHECK(lowest < 500); // spread over the whole range, not clustered
  CHECK(highest > 3'500);
  CHECK(retry_delay(s, 3, true, random) == 300'000);
}
