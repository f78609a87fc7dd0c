#pragma once

// The messages of shared storage, where several tlmd instances keep their
// leases in one database (storage_backends/shared_storage.hpp): claims of
// work, conditional changes of live leases, and counts for `health`.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "core/lease.hpp"

namespace tlm {

/// A change of a live lease, applied only while the lease is live (active,
/// `expires_ms > now_ms`), so no instance undoes what another instance's
/// client was told succeeded.
struct live_update {
  std::string id;
  int64_t now_ms = 0;     ///< The caller's clock.
  int64_t ttl_ms = 0;     ///< renew: the new term.
  int64_t expires_ms = 0; ///< renew: the new end.
  /// exchange: the value being swapped, which must still be the lease's
  /// (of two exchanges of one value only one finds it), its successor,
  /// the merged meta, and the total-life cap of the fresh term.
  std::string old_value;
  std::string new_value;
  std::string meta;
  int64_t max_ttl_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, live_update& x) {
  return f(caf::meta::type_name("live_update"), x.id, x.now_ms, x.ttl_ms,
           x.expires_ms, x.old_value, x.new_value, x.meta, x.max_ttl_ms);
}

/// How an instance asks for work nobody does.
struct orphan_query {
  int64_t now_ms = 0;
  /// An instance not heard of for this long is dead: its claims are free.
  int64_t dead_after_ms = 3'000;
  uint32_t max = 4'096; ///< Due or orphaned leases per call.
  /// False until the asker's own heartbeats have reached the database for
  /// `dead_after_ms`: after an outage every instance looks dead for a
  /// moment, and none should take the work of the others then.
  bool take_dead = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, orphan_query& x) {
  return f(caf::meta::type_name("orphan_query"), x.now_ms, x.dead_after_ms,
           x.max, x.take_dead);
}

/// Work an instance has claimed: running jobs of dead instances with
/// their leases, due leases nobody claimed, and the revocations and
/// intents (pending creates) of dead instances.
struct orphan_work {
  std::vector<revoke_job> jobs;
  std::vector<lease> leases;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, orphan_work& x) {
  return f(caf::meta::type_name("orphan_work"), x.jobs, x.leases);
}

/// The stored leases of one backend, counted for `health`.
struct stored_count {
  std::string backend;
  uint64_t live = 0;
  uint64_t retrying = 0; ///< Dead, their revocation failed at least once.
  uint64_t irrevocable = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_count& x) {
  return f(caf::meta::type_name("stored_count"), x.backend, x.live, x.retrying,
           x.irrevocable);
}

} // namespace tlm
