#pragma once

// Where a lease of the manager's index stands: one phase, the only state
// the manager keeps per lease besides its record.

#include <cstddef>
#include <cstdint>

#include "core/packed_lease.hpp"

namespace tlm {

enum class lease_phase : uint8_t {
  active,      ///< Usable until `expires_ms`; its expiry is scheduled.
  queued,      ///< Due: waits for its job's feed or its backend's lane.
  revoking,    ///< Its revocation is in flight at the backend.
  retry_wait,  ///< Waits for `due_ms` to try (again), e.g. after a failure.
  irrevocable, ///< Given up: shown with its last error, tried now and then.
  retrying_irrevocable, ///< ... one of those tries is in flight.
  /// Shared storage: due, and claimed from the database for revocation
  /// (another instance may have renewed, revoked or claimed it).
  claiming,
};

constexpr size_t lease_phase_count = 7;

/// The stored state a lease in this phase has (or gets at its next write:
/// an expired lease is not rewritten before its first revocation attempt).
inline record_state stored_state(lease_phase p) {
  switch (p) {
    case lease_phase::active:
    case lease_phase::claiming: return record_state::active;
    case lease_phase::irrevocable:
    case lease_phase::retrying_irrevocable: return record_state::irrevocable;
    default: return record_state::revoking;
  }
}

/// Phases with a deadline in the expiry schedule that counts.
inline bool scheduled(lease_phase p) {
  return p == lease_phase::active || p == lease_phase::retry_wait
         || p == lease_phase::irrevocable;
}

/// Given up: `get` still shows it, health counts it as irrevocable.
inline bool given_up(lease_phase p) {
  return p == lease_phase::irrevocable
         || p == lease_phase::retrying_irrevocable;
}

/// The phase a lease read at start takes: dead ones are due at once.
inline lease_phase loaded_phase(record_state stored, bool expired,
                                bool in_job) {
  if (stored == record_state::irrevocable)
    return lease_phase::irrevocable;
  if (stored == record_state::active && !expired && !in_job)
    return lease_phase::active;
  return lease_phase::retry_wait;
}

} // namespace tlm
