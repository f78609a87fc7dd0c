// The lease manager's create: validated here, an intent stored first for
// a remote backend (crash-safe), the token made, then the lease stored.

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "actors/manager_errors.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

constexpr size_t lease_id_bytes = 16; // 22 base64url characters

} // namespace

void lease_manager_state::create(create_request& req, reply<lease> rp) {
  auto record = new_record(req, rp);
  if (!record)
    return;
  auto* be = backend(record->backend);
  if (!be->remote) {
    // A local token dies with the process unless its lease is stored, so
    // it needs no intent record.
    create_at_cloud(std::move(*record), std::move(req.options), rp);
    return;
  }
  // Crash-safe creation: the intent is durable before the token exists,
  // so a crash in between leaves a record that start-up reconciles.
  record->state = state_pending;
  record->issued_ms = now_ms();
  record->expires_ms = record->issued_ms + record->ttl_ms;
  self->request(cfg.storage, caf::infinite, atom::save_v, *record)
    .then(
      [this, rp, record = *record,
       options = std::move(req.options)](atom::ok) mutable {
        create_at_cloud(std::move(record), std::move(options), rp);
      },
      [this, rp](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(from_storage(std::move(err)));
      });
}

std::optional<lease> lease_manager_state::new_record(create_request& req,
                                                     reply<lease>& rp) {
  auto name = req.backend.empty() ? cfg.default_backend : req.backend;
  auto* be = backend(name);
  auto ttl = req.ttl_ms == use_default_ttl ? cfg.default_ttl_ms : req.ttl_ms;
  auto problem = client_data_problem(req.meta, req.description, req.tags);
  if (be == nullptr)
    rp.deliver(make_error(ec::unknown_backend,
                          "no backend named '" + name + "' is configured"));
  else if (auto err = check_ttl(cfg, ttl))
    rp.deliver(std::move(err));
  else if (!problem.empty())
    rp.deliver(make_error(ec::invalid_request, std::move(problem)));
  else if (overloaded())
    rp.deliver(overload_error());
  if (rp.pending() == false)
    return std::nullopt;
  lease record;
  record.id = random_id(lease_id_bytes);
  record.backend = name;
  record.ttl_ms = ttl;
  record.renewable = req.renewable;
  record.tags = std::move(req.tags);
  record.meta = std::move(req.meta);
  record.description = std::move(req.description);
  record.scope = std::move(req.scope);
  // Stable and increasing, also across restarts: the create's time in
  // microseconds, or one more than the previous.
  last_row_id = record.row_id = std::max(last_row_id + 1, now_ms() * 1000);
  ++pending_requests;
  return record;
}

void lease_manager_state::create_at_cloud(lease record, std::string options,
                                          reply<lease> rp) {
  auto* be = backend(record.backend);
  token_request req{record.id, record.ttl_ms, std::move(options), 0};
  if (be->remote)
    req.deadline_ns = deadline_after(self->clock(), remote_timeout(*be));
  self->request(be->actor, timeout_of(*be), atom::create_v, std::move(req))
    .then(
      [this, rp, record](cloud_token& token) mutable {
        token_made(record, std::move(token));
        store_new(std::move(record), rp);
      },
      [this, rp, record, name = be->name](caf::error& err) mutable {
        --pending_requests;
        err = from_cloud(name, std::move(err));
        create_failed(record, err);
        rp.deliver(std::move(err));
      });
}

void lease_manager_state::create_failed(const lease& record, caf::error err) {
  if (record.state != state_pending)
    return;
  auto code = code_of(err);
  if (code == ec::invalid_request || code == ec::backend_error) {
    // The backend said no: nothing was made, the intent goes.
    store_quietly(atom::remove_v, record.id);
    return;
  }
  // Timed out or cut off: the token may exist or still appear. The intent
  // stays; a look after the backend's own deadline, when a slow create has
  // finished one way or the other, revokes what it finds.
  auto wait = 2 * remote_timeout(*backend(record.backend)).count();
  self->send(reconciler, atom::reconcile_v, record.backend,
             std::set<std::string>{record.id}, int64_t{wait});
}

// -- creates of a batch at in-process backends --------------------------------

void lease_manager_state::create_local(const backend_handle& be,
                                       std::vector<new_lease> group) {
  std::vector<token_request> reqs;
  reqs.reserve(group.size());
  for (auto& x : group)
    reqs.push_back({x.record.id, x.record.ttl_ms, std::move(x.options), 0});
  auto shared = std::make_shared<std::vector<new_lease>>(std::move(group));
  self->request(be.actor, caf::infinite, atom::create_v, std::move(reqs))
    .then(
      [this, shared](token_results& made) {
        std::vector<lease> records;
        std::vector<new_lease> kept;
        for (size_t i = 0; i < shared->size(); ++i) {
          auto& x = (*shared)[i];
          if (auto& err = made.errors[i]) {
            --pending_requests;
            x.rp.deliver(from_cloud(x.record.backend, err));
            continue;
          }
          token_made(x.record, std::move(made.tokens[i]));
          records.push_back(x.record);
          kept.push_back(std::move(x));
        }
        if (!kept.empty())
          store_local(std::move(records), std::move(kept));
      },
      [this, shared, name = be.name](caf::error& err) {
        for (auto& x : *shared) {
          --pending_requests;
          x.rp.deliver(from_cloud(name, err));
        }
      });
}

void lease_manager_state::store_local(std::vector<lease> records,
                                      std::vector<new_lease> group) {
  auto shared = std::make_shared<std::vector<new_lease>>(std::move(group));
  self->request(cfg.storage, caf::infinite, atom::save_v, std::move(records))
    .then(
      [this, shared](atom::ok) {
        for (auto& x : *shared)
          stored_new(std::move(x.record), x.rp);
      },
      [this, shared](caf::error& err) {
        for (auto& x : *shared)
          store_failed(x.record, x.rp, err);
      });
}

void lease_manager_state::token_made(lease& record, cloud_token token) {
  record.backend_id = std::move(token.backend_id);
  record.value = std::move(token.value);
  record.issued_ms = std::max(now_ms(), jobs.newest_start_ms() + 1);
  record.expires_ms = record.issued_ms + record.ttl_ms;
  record.state = state_active;
}

void lease_manager_state::stored_new(lease record, reply<lease>& rp) {
  --pending_requests;
  auto key = *lease_key::of(record.id);
  auto& s = index.insert(key, packed_lease{record}, lease_phase::active);
  schedule_at(s, record.expires_ms);
  rp.deliver(std::move(record));
}

void lease_manager_state::store_failed(const lease& record, reply<lease>& rp,
                                       const caf::error& err) {
  --pending_requests;
  // The token exists but no lease holds it: take it back.
  if (auto* be = backend(record.backend))
    self->request(be->actor, timeout_of(*be), atom::revoke_v, record.backend_id)
      .then([](atom::ok) {}, [](caf::error&) {});
  rp.deliver(from_storage(err));
}

void lease_manager_state::store_new(lease record, reply<lease> rp) {
  self->request(cfg.storage, caf::infinite, atom::save_v, record)
    .then([this, rp,
           record](atom::ok) mutable { stored_new(std::move(record), rp); },
          [this, rp, record](caf::error& err) mutable {
            store_failed(record, rp, err);
          });
}

} // namespace tlm
