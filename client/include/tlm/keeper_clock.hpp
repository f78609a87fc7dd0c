#pragma once

// Time and randomness for the lease keeper, injectable so tests run the
// renewal schedule on a fake clock.

#include <memory>

#include "tlm/lease.hpp"

namespace tlm::inline client_api {

class keeper_clock {
public:
  virtual ~keeper_clock() = default;
  virtual wall_time now() = 0;
  /// A uniform random number in [0, 1).
  virtual double uniform() = 0;
};

/// The system clock and a seeded std::mt19937_64 (the jitter needs no
/// cryptographic randomness, only a different seed per process).
std::shared_ptr<keeper_clock> system_keeper_clock();

} // namespace tlm::inline client_api
