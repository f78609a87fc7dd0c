#pragma once

// When a failed revocation is tried again, as pure functions of the
// failure and the lease's attempts so far (exponential backoff with full
// jitter, so a wave of failures does not come back as a wave of retries).

#include <algorithm>
#include <cstdint>
#include <random>

#include "core/error.hpp"

namespace tlm {

/// The manager's retry settings (see `lease_manager_config`).
struct retry_settings {
  int64_t base_ms = 1'000;
  int64_t max_ms = 300'000;
  uint32_t max_attempts = 10;
};

/// A throttled backend (`overloaded`) costs no attempt: it asked us to
/// wait, it did not fail.
inline bool counts_as_attempt(ec code) {
  return code != ec::overloaded;
}

/// Failures that cannot heal by themselves (our credentials rejected, the
/// backend gone from the config) make a lease irrevocable at once.
inline bool hopeless(ec code) {
  return code == ec::backend_error || code == ec::unknown_backend;
}

/// Whether a lease with `attempts` failed attempts, the last one failing
/// with `code`, is irrevocable from now on.
inline bool gives_up(const retry_settings& s, ec code, uint32_t attempts) {
  return hopeless(code) || attempts >= s.max_attempts;
}

/// The longest wait before the next try after `attempts` failed ones:
/// base * 2^(attempts - 1), capped at `max_ms`.
inline int64_t backoff_ceiling(const retry_settings& s, uint32_t attempts) {
  auto shift = std::min<uint32_t>(attempts, 20);
  return std::min(s.max_ms, s.base_ms << (shift > 0 ? shift - 1 : 0));
}

/// The wait before the next try: uniform in [1, ceiling] (full jitter);
/// an irrevocable lease is tried every `max_ms`.
template <class Random>
int64_t retry_delay(const retry_settings& s, uint32_t attempts,
                    bool irrevocable, Random& random) {
  if (irrevocable)
    return s.max_ms;
  auto ceiling = std::max<int64_t>(1, backoff_ceiling(s, attempts));
  return std::uniform_int_distribution<int64_t>{1, ceiling}(random);
}

} // namespace tlm
