// The lease manager over shared storage: several instances on one
// PostgreSQL database (storage_backends/shared_storage.hpp). The database
// is the truth. Reads go to it, and every step that must happen once (a
// revocation, a renew or a swap of a live lease) is a claim or a
// conditional change there, so the database decides which instance does
// it. The index holds only the leases this instance watches (it made or
// changed them, so it times their expiry) and the revocations it claimed;
// everything else it finds by polling: due leases nobody claimed, and the
// revocations, intents and jobs of instances that died.

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "actors/manager_errors.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tlm {

namespace {

using std::chrono::milliseconds;

/// Storage's not_found names the id; a client hears ours, which never does.
caf::error read_failed(caf::error err) {
  if (code_of(err) == ec::not_found)
    return not_found();
  return lease_manager_state::from_storage(std::move(err));
}

/// A lease that is ours to revoke already (claimed, queued, in flight).
bool claimed_here(const lease_index::slot* s) {
  return s != nullptr && s->second.phase != lease_phase::active
         && s->second.phase != lease_phase::claiming;
}

} // namespace

void lease_manager_state::watch(const lease& record) {
  auto key = lease_key::of(record.id);
  if (!key || claimed_here(index.find(*key)))
    return;
  auto& s = index.insert(*key, packed_lease{record}, lease_phase::active);
  schedule_at(s, record.expires_ms);
}

// -- reads --------------------------------------------------------------------

void lease_manager_state::get_shared(const std::string& id, reply<lease> rp) {
  self->request(cfg.storage, caf::infinite, atom::get_v, id)
    .then(
      [this, rp](lease& x) mutable {
        // The rule of lease_index::visible, on the stored record.
        bool live = x.state == state_active && x.expires_ms > now_ms();
        if (!live && x.state != state_irrevocable) {
          rp.deliver(not_found());
          return;
        }
        if (!live)
          x.value.clear();
        rp.deliver(std::move(x));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(read_failed(std::move(err)));
      });
  return;
}

/// Counts from the database; this instance's own view (revocations it
/// runs, failures it saw) when the database cannot answer.
void lease_manager_state::health_shared(reply<health_report> rp) {
  self->request(cfg.storage, caf::infinite, atom::health_v, now_ms())
    .then(
      [this, rp](std::vector<stored_count>& counts) mutable {
        auto report = local_health();
        report.live = 0;
        report.irrevocable = 0;
        for (auto& c : counts) {
          report.live += c.live;
          report.irrevocable += c.irrevocable;
        }
        for (auto& b : report.backends) {
          b.retrying = b.irrevocable = 0;
          for (auto& c : counts)
            if (c.backend == b.name) {
              b.retrying = c.retrying;
              b.irrevocable = c.irrevocable;
            }
        }
        rp.deliver(std::move(report));
      },
      [this, rp](caf::error& err) mutable {
        auto report = local_health();
        if (report.storage_error.empty())
          report.storage_error = message_of(from_storage(std::move(err)));
        rp.deliver(std::move(report));
      });
  return;
}

// -- revoke -------------------------------------------------------------------

void lease_manager_state::revoke_shared(const std::string& id,
                                        reply<atom::ok> rp) {
  // Our own expiry timer must not claim it meanwhile.
  if (auto* s = index.find(id); s && s->second.phase == lease_phase::active)
    index.set_phase(*s, lease_phase::claiming);
  self->request(cfg.storage, caf::infinite, atom::claim_v, id, now_ms())
    .then(
      [this, rp](lease& x) mutable {
        // The claim is the stored wish to revoke: no instance serves it now.
        auto key = *lease_key::of(x.id);
        index.insert(key, packed_lease{x}, lease_phase::queued);
        revoke_saved(key, rp);
      },
      [this, rp, id](caf::error& err) mutable {
        if (auto* s = index.find(id);
            s && s->second.phase == lease_phase::claiming)
          index.erase(s->first);
        if (code_of(err) == ec::not_found)
          revoke_not_live(id, rp);
        else
          rp.deliver(from_storage(std::move(err)));
      });
  return;
}

/// A lease that was not live to claim: one whose revocation was asked for
/// (at any instance) hears that it is pending, as at one instance.
void lease_manager_state::revoke_not_live(const std::string& id,
                                          reply<atom::ok> rp) {
  self->request(cfg.storage, caf::infinite, atom::get_v, id)
    .then(
      [this, rp](lease& x) mutable {
        bool dead = x.state == state_revoking || x.state == state_irrevocable;
        bool asked = x.expires_ms > now_ms() || !x.last_error.empty();
        if (!dead || !asked) {
          rp.deliver(not_found());
          return;
        }
        auto why = x.last_error.empty() ? "it is under way" : x.last_error;
        rp.deliver(revocation_pending(x.backend, why));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(read_failed(std::move(err)));
      });
}

void lease_manager_state::force_drop_shared(const std::string& id,
                                            reply<atom::ok> rp) {
  self->request(cfg.storage, caf::infinite, atom::get_v, id)
    .then([this, rp,
           id](lease& x) mutable { drop_stored(id, std::move(x.backend), rp); },
          [rp](caf::error& err) mutable {
            rp.deliver(read_failed(std::move(err)));
          });
  return;
}

// -- expiry -------------------------------------------------------------------

void lease_manager_state::claim_due(std::vector<std::string> ids) {
  self->request(cfg.storage, caf::infinite, atom::claim_v, ids, now_ms())
    .then(
      [this, ids](std::vector<lease>& claimed) {
        for (auto& x : claimed) {
          auto key = *lease_key::of(x.id);
          queue_revocation(
            index.insert(key, packed_lease{x}, lease_phase::queued));
        }
        // The rest was renewed, revoked or claimed elsewhere meanwhile.
        for (auto& id : ids)
          if (auto* s = index.find(id);
              s && s->second.phase == lease_phase::claiming)
            index.erase(s->first);
      },
      [this, ids](caf::error&) {
        // The database is away: try again soon (the poll finds them too).
        for (auto& id : ids)
          if (auto* s = index.find(id);
              s && s->second.phase == lease_phase::claiming) {
            index.set_phase(*s, lease_phase::active);
            schedule_at(*s, now_ms() + retry.base_ms);
          }
      });
}

orphan_query lease_manager_state::orphans_now() const {
  auto now = now_ms();
  bool heard = polls_ok_since_ms >= 0
               && now - polls_ok_since_ms >= cfg.instance_timeout_ms;
  return {now, cfg.instance_timeout_ms, static_cast<uint32_t>(cfg.due_per_tick),
          heard};
}

void lease_manager_state::poll_orphans() {
  // Three heartbeats per timeout, so one late poll never looks like death.
  auto period = std::min(cfg.shared_poll_ms, cfg.instance_timeout_ms / 3);
  auto next = [this, period](bool backlog) {
    if (backlog) // more was waiting than one poll takes: go on at once
      self->send(self, atom::orphans_v);
    else
      self->delayed_send(self, milliseconds(period), atom::orphans_v);
  };
  self->request(cfg.storage, caf::infinite, atom::orphans_v, orphans_now())
    .then(
      [this, next](orphan_work& work) {
        if (polls_ok_since_ms < 0)
          polls_ok_since_ms = now_ms();
        bool backlog = work.leases.size() >= cfg.due_per_tick;
        adopt_orphans(work);
        next(backlog);
      },
      [this, next](caf::error&) {
        polls_ok_since_ms = -1;
        next(false);
      });
}

void lease_manager_state::adopt_orphans(orphan_work& work) {
  auto now = now_ms();
  std::vector<uint32_t> taken;
  for (auto& job : work.jobs) {
    log_line("info", "took over revoke job '" + job.id
                       + "' from an instance that stopped");
    if (auto number = jobs.restore(job, now))
      taken.push_back(number);
  }
  // A claimed lease we already revoke is in hand; the rest joins the
  // index as a start-up load would add it, due at once.
  auto& leases = work.leases;
  leases.erase(std::remove_if(leases.begin(), leases.end(),
                              [this](const lease& x) {
                                return claimed_here(index.find(x.id));
                              }),
               leases.end());
  auto found = loader.apply(leases, now);
  for (auto& [name, ids] : found.intents) {
    auto* be = backend(name);
    // The instance that made the intent is gone, but a create it sent may
    // still finish within the backend's timeout: look after that.
    auto wait = be ? remote_timeout(*be).count() : int64_t{0};
    self->send(reconciler, atom::reconcile_v, name, ids, wait);
  }
  for (auto number : taken)
    if (jobs.status(number).progress.remaining == 0)
      finish_job(number);
  arm_timer();
}

// -- revoke jobs --------------------------------------------------------------

/// The job is stored first (so a survivor finishes it if we die), then
/// its leases are claimed in one statement: dead at every instance. It
/// takes every lease live at that moment, whatever its issue time says:
/// other instances' clocks differ from ours by a little.
void lease_manager_state::start_job_shared(uint32_t number,
                                           reply<job_status> rp) {
  auto job = jobs.status(number).job;
  auto every_live = job;
  every_live.created_ms = std::numeric_limits<int64_t>::max();
  auto fail = [this, rp, number, id = job.id](caf::error& err) mutable {
    jobs.drop(number);
    store_quietly(atom::remove_v, atom::job_v, id);
    rp.deliver(from_storage(std::move(err)));
  };
  self->request(cfg.storage, caf::infinite, atom::save_v, job)
    .then(
      [this, rp, number, every_live, fail](atom::ok) mutable {
        self
          ->request(cfg.storage, caf::infinite, atom::claim_v, every_live,
                    orphans_now())
          .then(
            [this, rp, number](std::vector<lease>& leases) {
              job_claimed(number, leases, rp);
            },
            fail);
      },
      fail);
}

void lease_manager_state::job_claimed(uint32_t number,
                                      std::vector<lease>& leases,
                                      reply<job_status> rp) {
  std::vector<lease_key> picked;
  for (auto& x : leases) {
    auto key = lease_key::of(x.id);
    if (!key || lease_loader::unreadable(x))
      continue;
    if (auto* s = index.find(*key); claimed_here(s)) {
      // Ours already: one we gave up on joins the job (as at one
      // instance), one on its way out is left on its way.
      if (s->second.job == 0 && given_up(s->second.phase)) {
        s->second.job = number;
        jobs.lease_added(number, true);
        picked.push_back(*key);
      }
      continue;
    }
    bool irrevocable = x.state == state_irrevocable;
    jobs.cover(number, x.issued_ms);
    auto& s = index.insert(*key, packed_lease{x},
                           irrevocable ? lease_phase::irrevocable
                                       : lease_phase::queued);
    s.second.job = number;
    jobs.lease_added(number, irrevocable);
    picked.push_back(*key);
  }
  jobs.set_total(number, picked.size());
  if (picked.empty())
    jobs.finish(number, now_ms());
  // Stored with its total before the answer, so `job` at any instance
  // shows it. Its leases are claimed either way: a failed save leaves the
  // record behind until the job's end writes it (and health shows it).
  auto start = [this, rp, number, picked](auto&&...) mutable {
    job_started(number, std::move(picked), rp);
  };
  self
    ->request(cfg.storage, caf::infinite, atom::save_v, jobs.status(number).job)
    .then([start](atom::ok) mutable { start(); },
          [start](caf::error&) mutable { start(); });
}

/// A job this instance does not run: as stored. Its progress is counted
/// by the instance running it, so a running one shows all its leases as
/// remaining here.
void lease_manager_state::stored_job(const std::string& id,
                                     reply<job_status> rp) {
  self->request(cfg.storage, caf::infinite, atom::load_v, atom::job_v)
    .then(
      [rp, id](std::vector<revoke_job>& stored) mutable {
        for (auto& job : stored)
          if (job.id == id) {
            job_progress progress;
            if (job.state == job_state::running)
              progress.remaining = job.total;
            rp.deliver(job_status{std::move(job), progress});
            return;
          }
        rp.deliver(make_error(ec::not_found, "no revoke job has this job_id"));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(from_storage(std::move(err)));
      });
}

} // namespace tlm
