#pragma once

// Every typed actor interface of tlmd, in one place.

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/manager_batch.hpp"
#include "actors/type_ids.hpp"
#include "core/lease.hpp"

namespace tlm {

/// The tokens of a batch of creates: one token or one error a request.
struct token_results {
  std::vector<cloud_token> tokens;
  std::vector<caf::error> errors;
};

/// A cloud service: creates and revokes the tokens at one backend
/// (mirrors Ockam's CloudService callbacks). Errors are `tlm::ec` codes.
using cloud_actor = caf::typed_actor<
  // Creates a token for a lease, marked with the lease id where the
  // backend can; refused if still queued past the request's deadline.
  caf::replies_to<atom::create, token_request>::with<cloud_token>,
  // The same for a front end's batch of creates (in-process backends): one
  // message and one answer for them all.
  caf::replies_to<atom::create,
                  std::vector<token_request>>::with<token_results>,
  // Revokes a token by its backend id; an unknown token counts as revoked.
  caf::replies_to<atom::revoke, std::string>::with<atom::ok>,
  // Extends a token to live `ttl_ms` more; `not_renewable` if impossible.
  caf::replies_to<atom::renew, std::string, int64_t>::with<atom::ok>,
  // Lists every token this backend manages.
  caf::replies_to<atom::get_all>::with<std::vector<cloud_token>>,
  // Finds the backend id of a live token value (`invalid_token` if none).
  caf::replies_to<atom::lookup, std::string>::with<std::string>,
  // Swaps the token (backend id, current value) for a fresh value; of two
  // exchanges of one value exactly one wins (`invalid_token` for the other).
  caf::replies_to<atom::exchange, token_swap>::with<cloud_token>,
  // Re-learns tokens from stored leases at start (the lease is the truth).
  caf::reacts_to<atom::adopt, std::vector<cloud_token>>,
  // A one-line description for logs and health output, never a secret.
  caf::replies_to<atom::describe>::with<std::string>>;

/// A deadline on the actor clock (so tests move it with simulated time),
/// in nanoseconds since its epoch, `in` from now; 0 stands for none.
inline int64_t deadline_after(caf::actor_clock& clock,
                              std::chrono::nanoseconds in) {
  auto at = clock.now() + in;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           at.time_since_epoch())
    .count();
}

/// Whether a deadline of `deadline_after` has passed (never when 0).
inline bool deadline_passed(caf::actor_clock& clock, int64_t deadline_ns) {
  return deadline_ns != 0 && deadline_after(clock, {}) > deadline_ns;
}

/// The storage service: persists leases (mirrors Ockam's StorageService).
/// A write is answered only after it is durably committed.
using storage_actor = caf::typed_actor<
  // Inserts or replaces a lease.
  caf::replies_to<atom::save, lease>::with<atom::ok>,
  // Inserts or replaces leases, in one commit (a batch of creates).
  caf::replies_to<atom::save, std::vector<lease>>::with<atom::ok>,
  // Forgets a lease; an unknown id counts as removed.
  caf::replies_to<atom::remove, std::string>::with<atom::ok>,
  // Reads up to `n` leases of any state after a position (all of them in
  // batches, for the start-up load).
  caf::replies_to<atom::load, std::string, uint32_t>::with<lease_page>,
  // One page of leases matching a filter of stored states and expiry.
  caf::replies_to<atom::list, lease_filter>::with<lease_page>,
  // Inserts or replaces a bulk revocation job.
  caf::replies_to<atom::save, revoke_job>::with<atom::ok>,
  // Forgets a finished job.
  caf::replies_to<atom::remove, atom::job, std::string>::with<atom::ok>,
  // Reads every stored job (for the start-up load).
  caf::replies_to<atom::load, atom::job>::with<std::vector<revoke_job>>,
  // Reads one stored lease (`not_found` when absent).
  caf::replies_to<atom::get, std::string>::with<lease>,
  // Shared storage only (storage_backends/shared_storage.hpp), else
  // `storage_error`. Each runs after every write sent before it.
  // Claims these leases if due at a time (claim_due).
  caf::replies_to<atom::claim, std::vector<std::string>,
                  int64_t>::with<std::vector<lease>>,
  // Claims one live lease for a revoke (claim_live).
  caf::replies_to<atom::claim, std::string, int64_t>::with<lease>,
  // Claims the leases a revoke job covers (claim_matching).
  caf::replies_to<atom::claim, revoke_job,
                  orphan_query>::with<std::vector<lease>>,
  // Heartbeat, then claims work nobody does (claim_orphans).
  caf::replies_to<atom::orphans, orphan_query>::with<orphan_work>,
  // Renews a live lease (renew_live).
  caf::replies_to<atom::renew, live_update>::with<lease>,
  // Swaps a live lease's value (swap_live).
  caf::replies_to<atom::exchange, live_update>::with<lease>,
  // Counts the stored leases by backend at a time (count).
  caf::replies_to<atom::health, int64_t>::with<std::vector<stored_count>>,
  // From now on, tells `watcher` (atom::storage, ok, reason) each time the
  // storage starts or stops failing, so a failed write nobody waits for
  // still shows in `health`.
  caf::reacts_to<atom::watch, caf::actor>,
  // Commits every pending write, then answers (used at shutdown).
  caf::replies_to<atom::flush>::with<atom::ok>,
  // Self-message that closes a group-commit batch.
  caf::reacts_to<atom::commit>>;

/// Reconciliation of intent records (see actors/reconciler.hpp).
using reconciler_actor = caf::typed_actor<
  // Intent records of a backend (lease ids) whose create may have made a
  // token nobody holds: look for such tokens after `delay_ms` (0: now),
  // revoke what is found, then drop the records.
  caf::reacts_to<atom::reconcile, std::string, std::set<std::string>, int64_t>,
  // Self-message: a look that failed is due again.
  caf::reacts_to<atom::tick>>;

/// The lease manager: the one actor the API talks to.
using lease_manager_actor = caf::typed_actor<
  // Creates a token at a backend and stores its lease.
  caf::replies_to<atom::create, create_request>::with<lease>,
  // Reads a live lease by id.
  caf::replies_to<atom::get, std::string>::with<lease>,
  // Starts a bulk revocation of the live leases matching (backend, tag),
  // answering once the job is stored; it runs in the background.
  caf::replies_to<atom::revoke, atom::job, std::string,
                  std::string>::with<job_status>,
  // Reports a bulk revocation's progress.
  caf::replies_to<atom::job, std::string>::with<job_status>,
  // Revokes the token at its backend, then forgets the lease; with `force`
  // (an operator's explicit choice) forgets it without the backend. A
  // backend that does not confirm gives `revocation_pending`: the lease is
  // dead and its revocation retried in the background.
  caf::replies_to<atom::revoke, revoke_request>::with<atom::ok>,
  // Extends a renewable lease by a ttl (`use_default_ttl`: its own ttl);
  // the flag says the total-life cap made the term shorter than asked.
  caf::replies_to<atom::renew, std::string, int64_t>::with<lease, bool>,
  // One page of live leases.
  caf::replies_to<atom::list, list_query>::with<lease_page>,
  // Swaps a one-time token value for a fresh one, merging metadata.
  caf::replies_to<atom::exchange, exchange_request>::with<lease>,
  // A front end's batch of calls (actors/manager_batch.hpp): run in order,
  // all outcomes handed back at once.
  caf::reacts_to<atom::batch, call_batch>,
  // Counts of live and irrevocable leases, and revocations per backend.
  caf::replies_to<atom::health>::with<health_report>,
  // Answers (with the live count) once every stored lease is loaded.
  caf::replies_to<atom::ready>::with<uint64_t>,
  // Answers once no revocation is in flight (for a graceful stop).
  caf::replies_to<atom::flush>::with<atom::ok>,
  // From storage: it failed (false, its reason) or works again (true).
  caf::reacts_to<atom::storage, bool, std::string>,
  // Self-message of the expiry schedule, carrying its deadline.
  caf::reacts_to<atom::tick, int64_t>,
  // Self-message: hand the next leases of started revoke jobs to their
  // revocation lanes.
  caf::reacts_to<atom::feed_lanes>,
  // Self-message (shared storage): say we are alive, claim orphaned work.
  caf::reacts_to<atom::orphans>>;

} // namespace tlm

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tlm::token_results)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tlm::token_request>)
