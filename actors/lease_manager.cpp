// The lease manager actor: a thin behaviour over its state, plus the
// client actions that read or end a lease. The rest of its state's work
// has a file each: manager_create.cpp, manager_updates.cpp (renew and
// exchange), manager_jobs.cpp, manager_revocation.cpp (expiry, lanes,
// retries) and manager_startup.cpp.

#include "actors/lease_manager.hpp"

#include <caf/all.hpp>

#include "actors/lease_manager_state.hpp"
#include "actors/list_view.hpp"
#include "actors/manager_errors.hpp"
#include "actors/reconciler.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace tlm {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

/// Growing past this rehashes every lease at once and stalls requests.
constexpr size_t initial_capacity = 1 << 21;

int64_t system_now_ms() {
  return duration_cast<milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// A dead lease whose revocation a client or a job asked for, or that has
/// failed: a revoke hears that it is pending. One that merely expired is
/// gone for the client (`not_found`), as before its expiry was handled.
bool revocation_asked(const lease_entry& e, int64_t now_ms) {
  if (e.phase == lease_phase::active)
    return false;
  bool expired = e.record.expires_ms <= now_ms;
  return !expired || e.job != 0 || !e.record.last_error().empty();
}

/// The lease a client sees: a dead one's token may still work at its
/// backend, so its value is never handed out again.
lease shown(const lease_index::slot& s, int64_t now_ms) {
  auto x = s.second.record.unpack(s.first.str());
  if (!lease_index::live(s.second, now_ms))
    x.value.clear();
  return x;
}

} // namespace

// -- time and lookups ---------------------------------------------------------

int64_t lease_manager_state::now_ms() const {
  auto elapsed = self->clock().now() - start_clock;
  return start_wall_ms + duration_cast<milliseconds>(elapsed).count();
}

const backend_handle*
lease_manager_state::backend(std::string_view name) const {
  auto i = backends.find(std::string{name});
  return i == backends.end() ? nullptr : &i->second;
}

milliseconds
lease_manager_state::remote_timeout(const backend_handle& be) const {
  return be.timeout.count() > 0 ? be.timeout : cfg.cloud_timeout;
}

caf::duration lease_manager_state::timeout_of(const backend_handle& be) const {
  // In-process backends get none: a request timeout costs two trips
  // through CAF's clock thread, the largest cost of a local create.
  if (be.remote)
    return caf::duration{remote_timeout(be)};
  return caf::duration{caf::infinite};
}

lease_index::slot* lease_manager_state::live(std::string_view id) {
  auto* s = index.find(id);
  return s != nullptr && lease_index::live(s->second, now_ms()) ? s : nullptr;
}

bool lease_manager_state::overloaded() const {
  return pending_requests >= cfg.max_pending_requests;
}

caf::error lease_manager_state::from_cloud(const std::string& name,
                                           caf::error err) {
  if (err.category() == caf::atom("tlm"))
    return err;
  if (err == caf::sec::request_timeout)
    return make_error(ec::backend_unavailable,
                      "backend '" + name + "' did not answer in time");
  return make_error(ec::backend_unavailable,
                    "backend '" + name + "' is unavailable");
}

caf::error lease_manager_state::from_storage(caf::error err) {
  if (err.category() == caf::atom("tlm"))
    return err;
  return make_error(ec::storage_error,
                    "the lease storage did not answer in time");
}

// -- get, list, health --------------------------------------------------------

void lease_manager_state::get(const std::string& id, reply<lease> rp) {
  if (cfg.shared)
    return get_shared(id, rp);
  auto* s = index.find(id);
  if (s == nullptr || !lease_index::visible(s->second, now_ms()))
    return rp.deliver(not_found());
  rp.deliver(shown(*s, now_ms()));
}

void lease_manager_state::list(const list_query& query, reply<lease_page> rp) {
  auto now = now_ms();
  self->request(cfg.storage, caf::infinite, atom::list_v, filter_of(query, now))
    .then(
      [this, rp, now,
       live_only = query.state == list_state::visible
                   || query.state
                        == list_state::active](lease_page& page) mutable {
        // A lease a revoke job has picked is dead at the API at once, but
        // stored as active until its turn: get, health and list agree.
        if (live_only)
          drop_dead(page.leases, now);
        for (auto& x : page.leases) {
          // An expired record not yet rewritten is on its way out too.
          if (x.state == state_active && x.expires_ms <= now)
            x.state = state_revoking;
          if (x.state != state_active)
            x.value.clear();
        }
        rp.deliver(std::move(page));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(from_storage(std::move(err)));
      });
  return;
}

void lease_manager_state::drop_dead(std::vector<lease>& xs, int64_t now) {
  auto dead = [this, now](const lease& x) {
    auto* s = x.state == state_active ? index.find(x.id) : nullptr;
    return s != nullptr && !lease_index::live(s->second, now);
  };
  xs.erase(std::remove_if(xs.begin(), xs.end(), dead), xs.end());
}

void lease_manager_state::health(reply<health_report> rp) {
  if (cfg.shared)
    return health_shared(rp);
  // Expired leases not handled yet leave the live count first, so health
  // and get agree at every moment.
  process_due(std::numeric_limits<size_t>::max());
  rp.deliver(local_health());
}

health_report lease_manager_state::local_health() {
  health_report report{index.count(lease_phase::active),
                       0,
                       loader.quarantined(),
                       {},
                       storage_error};
  for (auto& [name, _] : backends)
    health_of(name);
  for (auto& [name, trouble] : index.trouble())
    health_of(name);
  for (auto& [name, h] : revocation_health) {
    auto i = index.trouble().find(name);
    auto trouble = i == index.trouble().end() ? trouble_count{} : i->second;
    h.retrying = trouble.retrying;
    h.irrevocable = trouble.irrevocable;
    report.irrevocable += h.irrevocable;
    report.backends.push_back(h);
  }
  return report;
}

// -- revoke -------------------------------------------------------------------

void lease_manager_state::revoke(const revoke_request& req,
                                 reply<atom::ok> rp) {
  if (req.force)
    return force_drop(req.token_id, rp);
  if (cfg.shared)
    return revoke_shared(req.token_id, rp);
  auto* s = index.find(req.token_id);
  if (s != nullptr && revocation_asked(s->second, now_ms())) {
    // Asked again while its backend has not confirmed: say so again.
    auto& record = s->second.record;
    auto why = record.last_error();
    rp.deliver(revocation_pending(record.backend(),
                                  why.empty() ? "it is under way" : why));
    return;
  }
  if (s == nullptr || !lease_index::live(s->second, now_ms())) {
    rp.deliver(not_found());
    return;
  }
  // The wish to revoke is stored first: a restart must not bring the
  // lease back to life while its backend is down.
  index.set_phase(*s, lease_phase::queued);
  self
    ->request(cfg.storage, caf::infinite, atom::save_v,
              s->second.record.unpack(req.token_id))
    .then([this, rp, key = s->first](atom::ok) { revoke_saved(key, rp); },
          [this, rp, key = s->first](caf::error& err) mutable {
            auto* s = index.find(key);
            if (s != nullptr && s->second.phase == lease_phase::queued) {
              index.set_phase(*s, lease_phase::active);
              schedule_at(*s, s->second.record.expires_ms);
            }
            rp.deliver(from_storage(std::move(err)));
          });
  return;
}

void lease_manager_state::revoke_saved(const lease_key& key,
                                       reply<atom::ok> rp) {
  auto* s = index.find(key);
  if (s == nullptr || s->second.phase != lease_phase::queued) {
    rp.deliver(atom::ok_v); // forced away, or revoked by its job meanwhile
    return;
  }
  start_revocation(*s, [this, rp, key](caf::error err) mutable {
    if (!err) {
      rp.deliver(atom::ok_v);
      return;
    }
    // Never success before the backend confirmed: the lease stays dead
    // and the revocation is finished in the background.
    retry_later(key, err);
    auto* s = index.find(key);
    rp.deliver(
      revocation_pending(s ? s->second.record.backend() : "", message_of(err)));
  });
}

/// An operator's explicit choice: forget the lease without the backend's
/// confirmation (e.g. the token was deleted by hand).
void lease_manager_state::force_drop(const std::string& id,
                                     reply<atom::ok> rp) {
  auto* s = index.find(id);
  if (s == nullptr && cfg.shared)
    return force_drop_shared(id, rp);
  if (s == nullptr) {
    rp.deliver(not_found());
    return;
  }
  drop_stored(id, std::string{s->second.record.backend()}, rp);
  return;
}

void lease_manager_state::drop_stored(const std::string& id,
                                      std::string backend_name,
                                      reply<atom::ok> rp) {
  self->request(cfg.storage, caf::infinite, atom::remove_v, id)
    .then(
      [this, rp, id, backend_name](atom::ok) mutable {
        if (auto key = lease_key::of(id))
          erase(*key);
        log_line("warning", "lease '" + id + "' at backend '" + backend_name
                              + "' was dropped by force, without the "
                                "backend's confirmation");
        rp.deliver(atom::ok_v);
      },
      [rp](caf::error& err) mutable {
        rp.deliver(from_storage(std::move(err)));
      });
}

// -- batches ------------------------------------------------------------------

namespace {

/// Runs one call of a batch, answering into slot `i` of `answers`.
struct batch_runner {
  lease_manager_state& st;
  const std::shared_ptr<batch_answers>& answers;
  size_t i;

  template <class... Ts>
  reply<Ts...> slot() const {
    return {answers, i};
  }

  void operator()(create_request& x) const {
    st.create(x, slot<lease>());
  }
  void operator()(get_call& x) const {
    st.get(x.id, slot<lease>());
  }
  void operator()(revoke_request& x) const {
    st.revoke(x, slot<atom::ok>());
  }
  void operator()(renew_call& x) const {
    st.renew(x.id, x.ttl_ms, slot<lease, bool>());
  }
  void operator()(list_query& x) const {
    st.list(x, slot<lease_page>());
  }
  void operator()(exchange_request& x) const {
    st.exchange(x, slot<lease>());
  }
  void operator()(health_call&) const {
    st.health(slot<health_report>());
  }
  void operator()(job_call& x) const {
    st.job(x.id, slot<job_status>());
  }
  void operator()(revoke_matching_call& x) const {
    st.revoke_matching(x.backend, x.tag, slot<job_status>());
  }
};

} // namespace

void lease_manager_state::run_batch(call_batch& batch) {
  auto answers = std::make_shared<batch_answers>(batch.calls.size(),
                                                 std::move(batch.done));
  // Creates at in-process backends go in one message per backend (a
  // create depends on no other call of its batch); the rest run in turn.
  std::map<std::string, std::vector<new_lease>> local_creates;
  for (size_t i = 0; i < batch.calls.size(); ++i) {
    auto* req = std::get_if<create_request>(&batch.calls[i]);
    if (req == nullptr) {
      std::visit(batch_runner{*this, answers, i}, batch.calls[i]);
      continue;
    }
    reply<lease> rp{answers, i};
    const auto* be = backend(req->backend.empty() ? cfg.default_backend
                                                  : req->backend);
    if (be == nullptr || be->remote) {
      create(*req, rp); // one at a time, with its intent record first
      continue;
    }
    auto record = new_record(*req, rp);
    if (!record)
      continue;
    auto& group = local_creates[record->backend];
    group.push_back({std::move(*record), std::move(req->options), rp});
  }
  for (auto& [name, group] : local_creates)
    create_local(*backend(name), std::move(group));
}

// -- the actor ----------------------------------------------------------------

void lease_manager_state::init(lease_manager_config config) {
  start_wall_ms = config.start_wall_ms != 0 ? config.start_wall_ms
                                            : system_now_ms();
  start_clock = self->clock().now();
  retry = {config.retry_base_ms, config.retry_max_ms,
           config.max_revoke_attempts};
  lanes.set_default_limit(config.max_concurrent_revocations);
  for (auto& handle : config.backends) {
    backends.emplace(handle.name, handle);
    // Queued calls of a remote backend never wait out their timeout.
    if (handle.remote)
      lanes.set_limit(handle.name, std::max<size_t>(1, 2 * handle.concurrency));
  }
  index.reserve(initial_capacity);
  reconciler = spawn_reconciler(
    self->system(), {config.backends, config.storage, config.cloud_timeout,
                     config.reconcile_retry_ms, config.reconcile_min_delay_ms});
  self->link_to(reconciler);
  self->send(config.storage, atom::watch_v, caf::actor_cast<caf::actor>(self));
  cfg = std::move(config);
  if (!cfg.shared) {
    load_jobs();
    return;
  }
  // Nothing to load: the database is the truth, and due or orphaned work
  // is claimed from it from now on.
  finish_loading();
  poll_orphans();
}

lease_manager_actor spawn_lease_manager(caf::actor_system& sys,
                                        lease_manager_config cfg) {
  using self_ptr = lease_manager_actor::stateful_pointer<lease_manager_state>;
  auto init =
    [](self_ptr self,
       lease_manager_config cfg) -> lease_manager_actor::behavior_type {
    auto& st = self->state;
    st.self = self;
    st.init(std::move(cfg));
    // Each action answers through a response promise made here.
    auto answer = [self](auto action, auto... types) {
      auto rp = self->template make_response_promise<decltype(types)...>();
      action(reply<decltype(types)...>{rp});
      return rp;
    };
    return {
      [=, &st](atom::create, create_request& req) {
        return answer([&](auto rp) { st.create(req, rp); }, lease{});
      },
      [=, &st](atom::get, const std::string& id) {
        return answer([&](auto rp) { st.get(id, rp); }, lease{});
      },
      [=, &st](atom::revoke, const revoke_request& req) {
        return answer([&](auto rp) { st.revoke(req, rp); }, atom::ok_v);
      },
      [=, &st](atom::revoke, atom::job, const std::string& backend,
               const std::string& tag) {
        return answer([&](auto rp) { st.revoke_matching(backend, tag, rp); },
                      job_status{});
      },
      [=, &st](atom::job, const std::string& id) {
        return answer([&](auto rp) { st.job(id, rp); }, job_status{});
      },
      [=, &st](atom::renew, const std::string& id, int64_t ttl) {
        return answer([&](auto rp) { st.renew(id, ttl, rp); }, lease{}, false);
      },
      [=, &st](atom::list, const list_query& query) {
        return answer([&](auto rp) { st.list(query, rp); }, lease_page{});
      },
      [=, &st](atom::exchange, const exchange_request& req) {
        return answer([&](auto rp) { st.exchange(req, rp); }, lease{});
      },
      [=, &st](atom::health) {
        return answer([&](auto rp) { st.health(rp); }, health_report{});
      },
      [&st](atom::batch, call_batch& batch) { st.run_batch(batch); },
      [self, &st](atom::flush) {
        auto rp = self->make_response_promise<atom::ok>();
        if (st.lanes.in_flight() == 0)
          rp.deliver(atom::ok_v);
        else
          st.waiting_for_drain.push_back(rp);
        return rp;
      },
      [self, &st](atom::ready) {
        auto rp = self->make_response_promise<uint64_t>();
        if (st.loaded)
          rp.deliver(uint64_t{st.index.count(lease_phase::active)});
        else
          st.waiting_for_ready.push_back(rp);
        return rp;
      },
      [&st](atom::storage, bool ok, std::string& why) {
        st.storage_error = ok ? std::string{} : std::move(why);
      },
      [&st](atom::tick, int64_t due) { st.on_tick(due); },
      [&st](atom::feed_lanes) { st.feed_lanes(); },
      [&st](atom::orphans) { st.poll_orphans(); },
    };
  };
  return sys.spawn(init, std::move(cfg));
}

} // namespace tlm
