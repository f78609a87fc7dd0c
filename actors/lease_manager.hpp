#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"

namespace tlm {

/// A configured cloud backend as the manager sees it.
struct backend_handle {
  std::string name;
  cloud_actor actor;
  bool exchangeable = false; ///< Supports one-time token exchange.
  /// Calls cross a network, so they get `cloud_timeout`. In-process
  /// backends get none: a request timeout costs two trips through CAF's
  /// clock thread, the largest cost of a local create.
  bool remote = false;
  /// Deadline of one call when remote; zero: `cloud_timeout`.
  std::chrono::milliseconds timeout{0};
  /// Calls the backend serves at once. Revocations of a remote backend are
  /// paced to twice this, so queued calls never wait out their timeout.
  size_t concurrency = 1;
};

/// Everything the lease manager needs; policy lives here and nowhere else.
struct lease_manager_config {
  std::string default_backend = "local";
  int64_t default_ttl_ms = 3'600'000;
  int64_t min_ttl_ms = 1'000;
  int64_t max_ttl_ms = 96 * 3'600'000LL;
  std::vector<backend_handle> backends;
  storage_actor storage;
  /// Deadline of a call to a remote backend. Storage calls have none: the
  /// storage actor is local, and a stuck disk shows up as `overloaded`.
  std::chrono::milliseconds cloud_timeout{10'000};
  uint32_t load_batch = 10'000;
  /// Due leases (and picked leases of revoke jobs) handled per message,
  /// so a restart with a million expired leases keeps answering requests.
  size_t due_per_tick = 4'096;
  /// Revocations in flight at once per in-process backend; the rest wait
  /// in a queue per backend, so an expiry storm never floods a backend and
  /// a slow backend never delays the expiry of another's leases.
  size_t max_concurrent_revocations = 4'096;
  /// Client requests waiting on a backend or storage at once before new
  /// ones are answered `overloaded`.
  size_t max_pending_requests = 200'000;
  /// Failed revocations wait a random time up to base * 2^attempts, capped
  /// (exponential backoff with full jitter, so a wave of failures does not
  /// come back as a wave of retries).
  int64_t retry_base_ms = 1'000;
  int64_t retry_max_ms = 300'000;
  /// Failed attempts after which a lease is `irrevocable`: still retried
  /// every `retry_max_ms`, and shown with its last error.
  uint32_t max_revoke_attempts = 10;
  /// A look for the tokens of interrupted creates that failed is tried
  /// again after this long (or the backend's timeout, if longer).
  int64_t reconcile_retry_ms = 30'000;
  /// No look is sooner than this after the last (in-process backends have
  /// no timeout to wait out).
  int64_t reconcile_min_delay_ms = 1'000;
  /// The storage is shared by several instances (PostgreSQL): the
  /// database is the truth, every change that must happen once is a
  /// conditional statement there, and expiry is claimed from it.
  bool shared = false;
  /// Shared: how often this instance says it is alive and claims due or
  /// orphaned work (at least three times per `instance_timeout_ms`).
  int64_t shared_poll_ms = 1'000;
  /// Shared: an instance not heard of for this long is dead, and the
  /// others take over its claimed revocations, intents and jobs.
  int64_t instance_timeout_ms = 3'000;
  /// Wall-clock time (ms since epoch) at spawn; 0 reads the system clock.
  /// Afterwards time advances with the actor clock, so tests can drive it.
  int64_t start_wall_ms = 0;
};

/// Spawns the lease manager. It loads every stored lease first; `ready`
/// answers once that is done.
lease_manager_actor spawn_lease_manager(caf::actor_system& sys,
                                        lease_manager_config cfg);

} // namespace tlm
