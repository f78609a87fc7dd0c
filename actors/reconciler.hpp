#pragma once

// Reconciliation of intents, as an actor of its own over the cloud and
// storage interfaces: a remote create stores an intent record before the
// token exists; when the create's outcome is unknown (a crash, a lost
// answer), this actor looks at the backend for a token marked with the
// lease id, revokes what it finds and then drops the record.

#include <chrono>
#include <cstdint>
#include <vector>

#include "actors/interfaces.hpp"
#include "actors/lease_manager.hpp"

namespace tlm {

/// What the reconciler needs; the policy comes from `lease_manager_config`.
struct reconciler_config {
  std::vector<backend_handle> backends;
  storage_actor storage;
  std::chrono::milliseconds cloud_timeout{10'000};
  int64_t retry_ms = 30'000;    ///< `reconcile_retry_ms`
  int64_t min_delay_ms = 1'000; ///< `reconcile_min_delay_ms`
};

/// Spawns the reconciler; the manager links to it, so it ends with it.
reconciler_actor spawn_reconciler(caf::actor_system& sys,
                                  reconciler_config cfg);

} // namespace tlm
