#pragma once

// The lease manager's internals, for its actor (actors/lease_manager.cpp)
// and for tests that drive the state directly. Each job is a part of its
// own: the index, the expiry schedule, the revocation lanes, the retry
// policy, the revoke jobs, start-up loading and (an actor of its own)
// reconciliation; this state wires them to the cloud and storage actors.

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/typed_event_based_actor.hpp>

#include "actors/expiry_schedule.hpp"
#include "actors/lease_index.hpp"
#include "actors/lease_loader.hpp"
#include "actors/lease_manager.hpp"
#include "actors/manager_batch.hpp"
#include "actors/retry_policy.hpp"
#include "actors/revocation_lanes.hpp"
#include "actors/revoke_jobs.hpp"

namespace tlm {

struct lease_manager_state {
  static inline const char* name = "lease_manager";

  using slot = lease_index::slot;
  /// Gets a revocation's outcome at the backend (none: confirmed).
  using revoke_done = std::function<void(caf::error)>;

  lease_manager_actor::pointer self = nullptr;
  lease_manager_config cfg;
  std::unordered_map<std::string, backend_handle> backends;
  lease_index index;
  expiry_schedule schedule;
  revocation_lanes lanes;
  retry_settings retry;
  revoke_jobs jobs;
  lease_loader loader{index, schedule, jobs};
  reconciler_actor reconciler;
  /// How revocations fare per backend, beyond the index's counts.
  std::map<std::string, backend_health, std::less<>> revocation_health;
  /// Leases of started jobs not yet handed to their lanes: (job, leases).
  std::deque<std::pair<uint32_t, std::vector<lease_key>>> to_revoke;
  /// Intent records found while loading, for the reconciler.
  std::map<std::string, std::set<std::string>> intents_found;
  std::vector<caf::typed_response_promise<atom::ok>> waiting_for_drain;
  std::vector<caf::typed_response_promise<uint64_t>> waiting_for_ready;
  size_t pending_requests = 0;
  /// The row id of the latest create (see `lease::row_id`).
  int64_t last_row_id = 0;
  /// The storage's reason while it fails (it tells us), else empty.
  std::string storage_error;
  std::optional<int64_t> armed_due; ///< Deadline of the pending tick.
  /// Shared: since when our polls reach the database without a break (-1:
  /// the last failed), i.e. since when our heartbeats are known there.
  int64_t polls_ok_since_ms = -1;
  bool loaded = false;
  std::minstd_rand jitter{std::random_device{}()}; // timing only, no secret
  int64_t start_wall_ms = 0;
  caf::actor_clock::time_point start_clock;

  /// Sets up the parts from `cfg`; `self` must be set.
  void init(lease_manager_config config);

  // -- time and lookups (lease_manager.cpp) -----------------------------------

  int64_t now_ms() const;
  const backend_handle* backend(std::string_view name) const;
  caf::duration timeout_of(const backend_handle& be) const;
  std::chrono::milliseconds remote_timeout(const backend_handle& be) const;
  /// A lease a client can use now, or null.
  slot* live(std::string_view id);
  bool overloaded() const;
  /// Errors from outside our category get a code from the place they came
  /// from: a silent backend is unavailable, a silent storage is an error.
  static caf::error from_cloud(const std::string& name, caf::error err);
  static caf::error from_storage(caf::error err);

  // -- client actions (lease_manager.cpp) -------------------------------------

  void create(create_request& req, reply<lease> rp);
  /// A checked new lease for `req` (pending counted), or none after
  /// delivering why not.
  std::optional<lease> new_record(create_request& req, reply<lease>& rp);
  /// A create of a batch at an in-process backend, waiting for its token.
  struct new_lease {
    lease record;
    std::string options;
    reply<lease> rp;
  };
  /// The creates of one batch at one in-process backend: one message to
  /// the backend for all tokens, one save for all leases.
  void create_local(const backend_handle& be, std::vector<new_lease> group);
  void store_local(std::vector<lease> records, std::vector<new_lease> group);
  void token_made(lease& record, cloud_token token);
  void stored_new(lease record, reply<lease>& rp);
  void store_failed(const lease& record, reply<lease>& rp,
                    const caf::error& err);
  void create_at_cloud(lease record, std::string options, reply<lease> rp);
  void create_failed(const lease& record, caf::error err);
  void store_new(lease record, reply<lease> rp);
  void get(const std::string& id, reply<lease> rp);
  void revoke(const revoke_request& req, reply<atom::ok> rp);
  void revoke_saved(const lease_key& key, reply<atom::ok> rp);
  void force_drop(const std::string& id, reply<atom::ok> rp);
  void drop_stored(const std::string& id, std::string backend_name,
                   reply<atom::ok> rp);
  void renew(const std::string& id, int64_t ttl, reply<lease, bool> rp);
  /// Why a renew cannot go ahead, if it cannot.
  caf::error renew_refused(bool renewable, std::string_view backend_name,
                           int64_t ttl) const;
  void list(const list_query& query, reply<lease_page> rp);
  /// Leaves out of a page the stored-active leases the index knows are
  /// dead (picked by a revoke job, or being revoked).
  void drop_dead(std::vector<lease>& xs, int64_t now);
  void exchange(const exchange_request& req, reply<lease> rp);
  void exchange_found(const exchange_request& req, const std::string& bid,
                      reply<lease> rp);
  void revoke_matching(const std::string& backend_name, const std::string& tag,
                       reply<job_status> rp);
  std::vector<lease_key> pick(uint32_t number, const revoke_job& job);
  void job(const std::string& id, reply<job_status> rp);
  void job_started(uint32_t number, std::vector<lease_key> picked,
                   reply<job_status> rp);
  void health(reply<health_report> rp);
  /// Health as this instance knows it (all of it at one instance).
  health_report local_health();

  /// Runs a front end's batch: each call in order, each answering into
  /// its slot of the batch.
  void run_batch(call_batch& batch);

  // -- expiry and revocation (manager_revocation.cpp) -------------------------

  void schedule_at(slot& s, int64_t due_ms);
  void arm_timer();
  void on_tick(int64_t due);
  /// Starts revocations of due leases; at most `budget` per call.
  void process_due(size_t budget);
  void compact_schedule();
  void queue_revocation(slot& s);
  void start_revocation(slot& s, revoke_done done);
  void revoked_at_cloud(const std::string& backend_name, const lease_key& key,
                        revoke_done done);
  void finish_revocation(const std::string& backend_name, caf::error err,
                         const revoke_done& done);
  void retry_later(const lease_key& key, const caf::error& err);
  void give_up(slot& s);
  void erase(const lease_key& key);
  void revocation_failed(std::string_view backend_name, const caf::error& err);
  void revocation_worked(std::string_view backend_name);
  backend_health& health_of(std::string_view backend_name);
  /// Hands the next batch of picked leases to their lanes.
  void feed_lanes();

  // -- shared storage: several instances (manager_shared.cpp) -----------------

  /// Times the expiry of a lease this instance made or changed.
  void watch(const lease& record);
  void get_shared(const std::string& id, reply<lease> rp);
  void revoke_shared(const std::string& id, reply<atom::ok> rp);
  void revoke_not_live(const std::string& id, reply<atom::ok> rp);
  void force_drop_shared(const std::string& id, reply<atom::ok> rp);
  void health_shared(reply<health_report> rp);
  void renew_shared(const std::string& id, int64_t ttl, reply<lease, bool> rp);
  void renew_found(const lease& x, int64_t ttl, reply<lease, bool> rp);
  void exchange_shared(const exchange_request& req, const std::string& bid,
                       reply<lease> rp);
  void swap_stored(lease found, const exchange_request& req, reply<lease> rp);
  /// Claims due leases this instance watches, then revokes those it got.
  void claim_due(std::vector<std::string> ids);
  orphan_query orphans_now() const;
  /// Says we are alive and claims work nobody does, every poll period.
  void poll_orphans();
  void adopt_orphans(orphan_work& work);
  void start_job_shared(uint32_t number, reply<job_status> rp);
  void job_claimed(uint32_t number, std::vector<lease>& leases,
                   reply<job_status> rp);
  void stored_job(const std::string& id, reply<job_status> rp);

  // -- start-up (manager_startup.cpp) -----------------------------------------

  void load_jobs();
  void load_from(std::string after);
  void finish_loading();
  void finish_job(uint32_t number);

  // -- storage writes nobody waits for ----------------------------------------

  /// A failed one is made good by the next change or the next start. Sent
  /// anonymously, so it leaves no pending response behind: CAF 0.17 keeps
  /// those in a flat map searched linearly, and a bulk revocation of a
  /// million leases made that quadratic (minutes; measured).
  template <class... Ts>
  void store_quietly(Ts&&... xs) {
    caf::anon_send(cfg.storage, std::forward<Ts>(xs)...);
  }

  void save_quietly(const slot& s) {
    store_quietly(atom::save_v, s.second.record.unpack(s.first.str()));
  }
};

} // namespace tlm
