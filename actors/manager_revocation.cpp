// The lease manager's expiry and revocation: the schedule's timer, the
// lanes that pace revocations per backend, retries and giving up.

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/text.hpp"

namespace tlm {

using std::chrono::milliseconds;

void lease_manager_state::schedule_at(slot& s, int64_t due_ms) {
  s.second.due_ms = due_ms;
  schedule.add(due_ms, s.first);
  arm_timer();
}

/// Keeps exactly one tick pending for the earliest deadline.
void lease_manager_state::arm_timer() {
  auto earliest = schedule.earliest();
  if (!earliest || (armed_due && *armed_due <= *earliest))
    return;
  armed_due = *earliest;
  auto delay = *earliest - now_ms();
  if (delay <= 0) // due now: behind what waits in the mailbox, no timer
    self->send(self, atom::tick_v, *earliest);
  else
    self->delayed_send(self, milliseconds(delay), atom::tick_v, *earliest);
}

void lease_manager_state::on_tick(int64_t due) {
  if (armed_due && *armed_due == due)
    armed_due.reset();
  process_due(cfg.due_per_tick);
}

void lease_manager_state::process_due(size_t budget) {
  auto now = now_ms();
  std::vector<std::string> to_claim; // shared storage: ours once claimed
  while (budget-- > 0) {
    auto next = schedule.pop_due(now);
    if (!next)
      break;
    auto* s = index.find(next->key);
    if (s == nullptr || s->second.due_ms != next->due_ms
        || !scheduled(s->second.phase))
      continue; // stale: renewed, revoked, or already being revoked
    if (cfg.shared && s->second.phase == lease_phase::active) {
      index.set_phase(*s, lease_phase::claiming);
      to_claim.push_back(s->first.str());
    } else if (!given_up(s->second.phase)) {
      queue_revocation(*s);
    } else if (lanes.has_room(s->second.record.backend())) {
      start_revocation(*s, [this, key = s->first](caf::error err) {
        if (err)
          retry_later(key, err);
      });
    } else { // a given-up lease never waits in a lane: it tries again soon
      schedule_at(*s, now + retry.base_ms);
    }
  }
  if (!to_claim.empty())
    claim_due(std::move(to_claim));
  if (schedule.size() > 2 * index.size() + 1024)
    compact_schedule();
  arm_timer();
}

/// Drops stale heap entries left by renewals.
void lease_manager_state::compact_schedule() {
  schedule.clear();
  for (auto& [key, entry] : index)
    if (scheduled(entry.phase))
      schedule.add(entry.due_ms, key);
  armed_due.reset();
}

/// Revokes now if the lease's backend has a free slot, else queues it
/// behind the others waiting for that backend, in deadline order.
void lease_manager_state::queue_revocation(slot& s) {
  auto backend_name = s.second.record.backend();
  if (lanes.has_room(backend_name)) {
    start_revocation(s, [this, key = s.first](caf::error err) {
      if (err)
        retry_later(key, err);
    });
    return;
  }
  index.set_phase(s, lease_phase::queued);
  lanes.wait(backend_name, s.first);
}

/// Revokes at the cloud first, then forgets the lease in storage. `done`
/// gets the cloud's verdict; storage failures leave the lease for a retry.
void lease_manager_state::start_revocation(slot& s, revoke_done done) {
  auto key = s.first;
  index.set_phase(s, given_up(s.second.phase)
                       ? lease_phase::retrying_irrevocable
                       : lease_phase::revoking);
  std::string name{s.second.record.backend()};
  auto* be = backend(name);
  if (be == nullptr) {
    // A backend removed from the config while its leases live on.
    auto err = make_error(ec::unknown_backend,
                          "a lease names backend '" + name
                            + "', which is not configured");
    revocation_failed(name, err);
    done(std::move(err));
    return;
  }
  lanes.started(name);
  self
    ->request(be->actor, timeout_of(*be), atom::revoke_v,
              std::string{s.second.record.backend_id(key.view())})
    .then(
      [this, name, key, done](atom::ok) {
        revocation_worked(name);
        revoked_at_cloud(name, key, done);
      },
      [this, name, done](caf::error& err) {
        err = from_cloud(name, std::move(err));
        revocation_failed(name, err);
        finish_revocation(name, std::move(err), done);
      });
}

void lease_manager_state::revoked_at_cloud(const std::string& backend_name,
                                           const lease_key& key,
                                           revoke_done done) {
  self->request(cfg.storage, caf::infinite, atom::remove_v, key.str())
    .then(
      [this, backend_name, key, done](atom::ok) {
        erase(key);
        finish_revocation(backend_name, caf::none, done);
      },
      [this, backend_name, key, done](caf::error& err) {
        // The token is dead; only the record is left. Retry both (revoke
        // is idempotent) and tell the client it worked.
        retry_later(key, from_storage(std::move(err)));
        finish_revocation(backend_name, caf::none, done);
      });
}

void lease_manager_state::finish_revocation(const std::string& backend_name,
                                            caf::error err,
                                            const revoke_done& done) {
  lanes.finished(backend_name);
  done(std::move(err));
  if (lanes.in_flight() == 0) {
    for (auto& rp : waiting_for_drain)
      rp.deliver(atom::ok_v);
    waiting_for_drain.clear();
  }
  // The freed slot goes to the next lease of this backend waiting.
  while (auto key = lanes.next(backend_name)) {
    auto* s = index.find(*key);
    if (s != nullptr && s->second.phase == lease_phase::queued)
      queue_revocation(*s);
  }
}

/// The lease stays dead and stored until a revocation succeeds, so nothing
/// is ever dropped unrevoked (retry policy: actors/retry_policy.hpp).
void lease_manager_state::retry_later(const lease_key& key,
                                      const caf::error& err) {
  auto* s = index.find(key);
  if (s == nullptr)
    return;
  auto code = code_of(err);
  bool first_failure = s->second.record.last_error().empty();
  index.record_failure(*s, cut_utf8(message_of(err), max_error_bytes),
                       counts_as_attempt(code));
  auto attempts = s->second.record.attempts;
  if (given_up(s->second.phase)) {
    index.set_phase(*s, lease_phase::irrevocable);
  } else if (gives_up(retry, code, attempts)) {
    give_up(*s);
  } else {
    index.set_phase(*s, lease_phase::retry_wait);
    // Stored as revoking with its attempts after the first failure, so a
    // restart neither forgets them nor shows the lease. (One that succeeds
    // at once is never written twice: its past `expires` says as much.)
    if (first_failure)
      save_quietly(*s);
  }
  auto delay = retry_delay(retry, attempts, given_up(s->second.phase), jitter);
  schedule_at(*s, now_ms() + delay);
}

/// Persisted, logged once, retried every `retry_max_ms`.
void lease_manager_state::give_up(slot& s) {
  index.set_phase(s, lease_phase::irrevocable);
  auto& record = s.second.record;
  if (s.second.job != 0)
    jobs.lease_gave_up(s.second.job);
  log_line("error",
           "lease '" + s.first.str() + "' at backend '"
             + std::string{record.backend()} + "' is irrevocable after "
             + std::to_string(record.attempts)
             + " failed attempts: " + std::string{record.last_error()});
  save_quietly(s);
}

void lease_manager_state::erase(const lease_key& key) {
  auto gone = index.erase(key);
  if (!gone || gone->job == 0)
    return;
  if (jobs.lease_gone(gone->job, given_up(gone->phase)) && loaded)
    finish_job(gone->job);
}

backend_health& lease_manager_state::health_of(std::string_view backend_name) {
  auto i = revocation_health.find(backend_name);
  if (i == revocation_health.end()) {
    i = revocation_health.emplace(std::string{backend_name}, backend_health{})
          .first;
    i->second.name = i->first;
  }
  return i->second;
}

/// A backend's revocations start failing, or keep failing: logged once
/// when they start, then only counted.
void lease_manager_state::revocation_failed(std::string_view backend_name,
                                            const caf::error& err) {
  auto& h = health_of(backend_name);
  h.last_error = cut_utf8(message_of(err), max_error_bytes);
  if (h.failed_attempts++ == 0)
    log_line("error", "backend '" + h.name + "' fails to revoke tokens: "
                        + h.last_error + "; retrying with backoff");
}

/// A backend confirmed a revocation: logged once if it was failing.
void lease_manager_state::revocation_worked(std::string_view backend_name) {
  auto& h = health_of(backend_name);
  if (h.failed_attempts == 0)
    return;
  log_line("info", "backend '" + h.name + "' revokes tokens again, after "
                     + std::to_string(h.failed_attempts) + " failed attempts");
  h.failed_attempts = 0;
  h.last_error.clear();
}

} // namespace tlm
