// The lease manager's start: stored jobs first, then every lease in
// batches (actors/lease_loader.hpp), then the intents to the reconciler.

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "core/log.hpp"

namespace tlm {

void lease_manager_state::load_jobs() {
  self->request(cfg.storage, caf::infinite, atom::load_v, atom::job_v)
    .then(
      [this](std::vector<revoke_job>& stored) {
        for (auto& job : stored)
          if (!jobs.restore(job, now_ms()))
            store_quietly(atom::remove_v, atom::job_v, job.id);
        load_from("");
      },
      [this](caf::error& err) { self->quit(std::move(err)); });
}

void lease_manager_state::load_from(std::string after) {
  self
    ->request(cfg.storage, caf::infinite, atom::load_v, std::move(after),
              cfg.load_batch)
    .then(
      [this](lease_page& page) {
        auto found = loader.apply(page.leases, now_ms());
        for (auto& [name, tokens] : found.tokens)
          if (auto* be = backend(name))
            self->send(be->actor, atom::adopt_v, std::move(tokens));
        for (auto& [name, ids] : found.intents)
          intents_found[name].insert(ids.begin(), ids.end());
        if (!page.next_after.empty())
          load_from(std::move(page.next_after));
        else
          finish_loading();
      },
      [this](caf::error& err) {
        // Without its leases the manager must not serve: it could hand
        // out ids twice or let stored tokens live forever.
        self->quit(std::move(err));
      });
}

void lease_manager_state::finish_loading() {
  loaded = true;
  for (auto number : jobs.without_leases())
    finish_job(number);
  for (auto& rp : waiting_for_ready)
    rp.deliver(uint64_t{index.count(lease_phase::active)});
  waiting_for_ready.clear();
  process_due(cfg.due_per_tick);
  for (auto& [name, ids] : intents_found)
    self->send(reconciler, atom::reconcile_v, name, ids, int64_t{0});
  intents_found.clear();
}

void lease_manager_state::finish_job(uint32_t number) {
  auto& job = jobs.finish(number, now_ms());
  log_line("info", "revoke job '" + job.id + "' finished: "
                     + std::to_string(job.total) + " leases revoked");
  store_quietly(atom::save_v, job);
}

} // namespace tlm
