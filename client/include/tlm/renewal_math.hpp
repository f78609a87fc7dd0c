#pragma once

// The keeper's timing as pure functions: when a lease is stale, and how
// long to wait before retrying.

#include <chrono>

#include "tlm/lease.hpp"

namespace tlm::inline client_api {

using std::chrono::milliseconds;

struct renewal_timing {
  /// A lease is stale after this fraction of its term (0 < f <= 1).
  double stale_fraction = 0.75;
  /// The renewal moves earlier by up to this fraction of the term, chosen
  /// at random for each term (0 <= j < stale_fraction).
  double jitter_fraction = 0.1;
  /// Retries wait a random time in [0, min(max, base * 2^(n-1))).
  milliseconds backoff_base{500};
  milliseconds backoff_max{30000};
  /// The shortest wait between two tries, so a zero draw never spins.
  milliseconds backoff_floor{10};
};

/// An error naming the field when `t` is out of range; empty when valid.
std::string check_timing(const renewal_timing& t);

/// When to refresh a lease whose term runs from `start` to `expires`:
/// `start + term * (stale - jitter * u)`, with `u` in [0, 1).
wall_time refresh_time(const renewal_timing& t, wall_time start,
                       wall_time expires, double u);

/// How long to wait before try number `attempt` (1 = the first retry):
/// full jitter, `u * min(max, base * 2^(attempt-1))`, at least the floor.
milliseconds backoff_delay(const renewal_timing& t, int attempt, double u);

} // namespace tlm::inline client_api
