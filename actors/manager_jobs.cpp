// The lease manager's bulk revocations (`revoke_prefix`): a job picks its
// leases at once (dead at the API from then on) and feeds them to their
// revocation lanes a batch per message.

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/secrets.hpp"

namespace tlm {

/// Starts a job revoking every live (or given-up) lease that matches.
/// Only the job is stored before the answer; its leases then go through
/// the same paced, retried path as expiry.
void lease_manager_state::revoke_matching(const std::string& backend_name,
                                          const std::string& tag,
                                          reply<job_status> rp) {
  if (backend_name.empty() && tag.empty())
    rp.deliver(make_error(ec::invalid_request,
                          "revoke_prefix needs a backend or a tag"));
  else if (!backend_name.empty() && backend(backend_name) == nullptr)
    rp.deliver(
      make_error(ec::unknown_backend,
                 "no backend named '" + backend_name + "' is configured"));
  if (!rp.pending())
    return;
  for (auto& id : jobs.forget_outdated(now_ms()))
    store_quietly(atom::remove_v, atom::job_v, id);
  revoke_job job;
  job.id = random_id(16); // 22 base64url characters, like a lease id
  job.backend = backend_name;
  job.tag = tag;
  job.created_ms = jobs.next_start(now_ms());
  auto number = jobs.start(job);
  if (cfg.shared) {
    start_job_shared(number, rp);
    return;
  }
  auto picked = pick(number, job);
  job.total = picked.size();
  jobs.set_total(number, job.total);
  if (job.total == 0)
    jobs.finish(number, job.created_ms);
  self
    ->request(cfg.storage, caf::infinite, atom::save_v, jobs.status(number).job)
    .then([this, rp, number, picked = std::move(picked)](
            atom::ok) mutable { job_started(number, std::move(picked), rp); },
          [this, rp, number, picked](caf::error& err) mutable {
            for (auto& key : picked)
              if (auto* s = index.find(key); s && s->second.job == number) {
                s->second.job = 0;
                if (s->second.phase == lease_phase::queued)
                  index.set_phase(*s, lease_phase::active);
              }
            jobs.drop(number);
            rp.deliver(from_storage(std::move(err)));
          });
  return;
}

/// Answers the client that the job is stored, and hands its leases on.
void lease_manager_state::job_started(uint32_t number,
                                      std::vector<lease_key> picked,
                                      reply<job_status> rp) {
  auto status = jobs.status(number);
  log_line("info", "revoke job '" + status.job.id + "' started for "
                     + std::to_string(status.job.total) + " leases");
  rp.deliver(status);
  if (!picked.empty()) {
    to_revoke.emplace_back(number, std::move(picked));
    if (to_revoke.size() == 1)
      self->send(self, atom::feed_lanes_v);
  }
}

/// Marks every live (or given-up) lease under the job's filter as the
/// job's; live ones are dead at the API from now on.
std::vector<lease_key> lease_manager_state::pick(uint32_t number,
                                                 const revoke_job& job) {
  std::vector<lease_key> picked;
  auto now = now_ms();
  for (auto& slot : index) {
    auto& entry = slot.second;
    if (entry.job != 0 || !lease_index::visible(entry, now)
        || !revoke_jobs::matches(entry.record, job))
      continue;
    entry.job = number;
    jobs.lease_added(number, given_up(entry.phase));
    if (!given_up(entry.phase))
      index.set_phase(slot, lease_phase::queued);
    picked.push_back(slot.first);
  }
  return picked;
}

void lease_manager_state::job(const std::string& id, reply<job_status> rp) {
  if (auto status = jobs.status(id))
    return rp.deliver(*status);
  if (cfg.shared) // maybe another instance's
    return stored_job(id, rp);
  rp.deliver(make_error(ec::not_found, "no revoke job has this job_id"));
}

void lease_manager_state::feed_lanes() {
  if (to_revoke.empty())
    return;
  auto& [number, keys] = to_revoke.front();
  auto n = std::min(keys.size(), cfg.due_per_tick);
  for (size_t k = keys.size() - n; k < keys.size(); ++k) {
    auto* s = index.find(keys[k]);
    if (s == nullptr || s->second.job != number)
      continue; // revoked meanwhile
    if (s->second.phase == lease_phase::queued) {
      save_quietly(*s); // stored as revoking, so `list` stops showing it
      queue_revocation(*s);
    } else if (s->second.phase == lease_phase::irrevocable) {
      schedule_at(*s, now_ms()); // one more try, now
    }
  }
  keys.resize(keys.size() - n);
  if (keys.empty())
    to_revoke.pop_front();
  if (!to_revoke.empty())
    self->send(self, atom::feed_lanes_v);
}

} // namespace tlm
