// The lease manager's updates of a live lease: renew and exchange. Both
// go through `store_update`, which applies only the fields its operation
// owns to the lease as it is when the backend has answered.

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/lease_manager_state.hpp"
#include "actors/manager_errors.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

/// Applies `patch` to the meta of `x` as a JSON Merge Patch (RFC 7386),
/// within the bounds of what a lease may carry.
caf::expected<std::string> merge_meta(const lease& x,
                                      const std::string& patch) {
  auto merged = nlohmann::json::parse(x.meta, nullptr, false);
  auto changes = nlohmann::json::parse(patch, nullptr, false);
  if (merged.is_discarded() || !merged.is_object())
    merged = nlohmann::json::object();
  if (changes.is_discarded() || !changes.is_object())
    return make_error(ec::invalid_request, "meta must be a JSON object");
  merged.merge_patch(changes);
  auto text = merged.dump();
  if (auto problem = client_data_problem(text, x.description, x.tags);
      !problem.empty())
    return make_error(ec::invalid_request, std::move(problem));
  return text;
}

/// When a renewed term ends, and whether the cap cut it: a total-life cap,
/// as in Vault, so renewals never pass issued + max ttl.
std::pair<int64_t, bool> renewal_end(const lease_manager_config& cfg,
                                     int64_t issued_ms, int64_t now,
                                     int64_t ttl) {
  auto cap = issued_ms + cfg.max_ttl_ms;
  return {std::min(now + ttl, cap), now + ttl > cap};
}

caf::error ended_meanwhile(ec code) {
  return make_error(code, "the lease ended meanwhile");
}

/// Applies an update to the lease as it is now and saves that, unless the
/// lease died meanwhile (then the client gets `dead_code`); the reply is
/// the lease as saved, and `more`. `change` sets only the fields its
/// operation owns, so racing updates of one lease never undo each other
/// (issue 9: a renew saved the copy it took before an exchange and brought
/// the used value back). The index takes the update when the save is
/// sent, not when it is confirmed: the next update starts from it, and
/// storage applies writes in order, so no save carries stale fields. A
/// failed save (its client is told) leaves the index ahead of storage
/// until the next write of the lease, which carries it all.
template <class Change, class Promise, class... More>
void store_update(lease_manager_state& st, const std::string& id, Change change,
                  Promise rp, ec dead_code, More... more) {
  // A revoke may have begun while the backend answered; saving now would
  // bring the record back after the revoke's removal. Storage applies
  // writes in order, so one checked and sent here cannot pass a removal.
  auto* s = st.live(id);
  if (s == nullptr) {
    --st.pending_requests;
    rp.deliver(ended_meanwhile(dead_code));
    return;
  }
  auto updated = s->second.record.unpack(id);
  change(updated);
  st.index.update(*s, updated);
  st.schedule_at(*s, updated.expires_ms);
  st.self->request(st.cfg.storage, caf::infinite, atom::save_v, updated)
    .then(
      [&st, rp, updated, dead_code, more...](atom::ok) mutable {
        --st.pending_requests;
        if (st.live(updated.id) == nullptr)
          rp.deliver(ended_meanwhile(dead_code));
        else
          rp.deliver(std::move(updated), more...);
      },
      [&st, rp](caf::error& err) mutable {
        --st.pending_requests;
        rp.deliver(lease_manager_state::from_storage(std::move(err)));
      });
}

/// An exchange's steps at one instance and at several: the meta merged
/// with the lease as found, then the backend's swap of the value (of two
/// racing exchanges one wins); `stored(token, merged)` stores the outcome.
template <class Stored>
void swap_at_backend(lease_manager_state& st, const lease& found,
                     const exchange_request& req, reply<lease> rp,
                     Stored stored) {
  auto merged = merge_meta(found, req.meta);
  if (!merged) {
    --st.pending_requests;
    rp.deliver(std::move(merged.error()));
    return;
  }
  auto* be = st.backend(req.backend);
  st.self
    ->request(be->actor, st.timeout_of(*be), atom::exchange_v,
              token_swap{found.id, req.value})
    .then([stored, merged = std::move(*merged)](
            cloud_token& token) mutable { stored(token, merged); },
          [&st, rp, name = be->name](caf::error& err) mutable {
            --st.pending_requests;
            rp.deliver(lease_manager_state::from_cloud(name, std::move(err)));
          });
}

} // namespace

void lease_manager_state::renew(const std::string& id, int64_t ttl,
                                reply<lease, bool> rp) {
  if (cfg.shared)
    return renew_shared(id, ttl, rp);
  auto* s = live(id);
  if (s == nullptr) {
    rp.deliver(not_found());
    return;
  }
  auto& record = s->second.record;
  if (ttl == use_default_ttl)
    ttl = record.ttl_ms;
  auto* be = backend(record.backend());
  if (auto err = renew_refused(record.renewable, record.backend(), ttl))
    rp.deliver(std::move(err));
  else if (overloaded())
    rp.deliver(overload_error());
  if (!rp.pending())
    return;
  auto now = now_ms();
  auto end = renewal_end(cfg, record.issued_ms, now, ttl);
  auto expires = end.first;
  bool capped = end.second;
  auto term = expires - now;
  ++pending_requests;
  self
    ->request(be->actor, timeout_of(*be), atom::renew_v,
              std::string{record.backend_id(id)}, term)
    .then(
      [this, rp, id, term, expires, capped](atom::ok) mutable {
        auto extend = [term, expires](lease& x) {
          x.ttl_ms = term;
          x.expires_ms = expires;
        };
        store_update(*this, id, extend, rp, ec::not_found, capped);
      },
      [this, rp, name = be->name](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(from_cloud(name, std::move(err)));
      });
  return;
}

caf::error lease_manager_state::renew_refused(bool renewable,
                                              std::string_view backend_name,
                                              int64_t ttl) const {
  if (!renewable)
    return make_error(ec::not_renewable, "the lease was not created renewable");
  if (auto err = check_ttl(cfg, ttl))
    return err;
  if (backend(backend_name) == nullptr)
    return make_error(ec::unknown_backend, "backend '"
                                             + std::string{backend_name}
                                             + "' is not configured");
  return caf::none;
}

/// The backend of an exchange: the one named, else the default if it
/// exchanges, else the first that does.
static const backend_handle* exchange_backend(const lease_manager_state& st,
                                              const std::string& name) {
  if (!name.empty())
    return st.backend(name);
  auto* preferred = st.backend(st.cfg.default_backend);
  if (preferred != nullptr && preferred->exchangeable)
    return preferred;
  for (auto& [_, handle] : st.backends)
    if (handle.exchangeable)
      return &handle;
  return nullptr;
}

void lease_manager_state::exchange(const exchange_request& req,
                                   reply<lease> rp) {
  auto* be = exchange_backend(*this, req.backend);
  if (be == nullptr || !be->exchangeable) {
    auto under = req.backend.empty() ? "" : " under '" + req.backend + "'";
    rp.deliver(make_error(ec::invalid_token,
                          "no configured backend exchanges tokens" + under));
    return;
  }
  if (overloaded()) {
    rp.deliver(overload_error());
    return;
  }
  ++pending_requests;
  // Step 1: which lease holds this value? Checked before the swap so a
  // rejected merge never burns the client's token.
  self->request(be->actor, timeout_of(*be), atom::lookup_v, req.value)
    .then(
      [this, rp, req = exchange_request{req},
       name = be->name](std::string& bid) mutable {
        req.backend = name;
        if (cfg.shared) {
          exchange_shared(req, bid, rp);
          return;
        }
        auto* s = live(bid);
        if (s == nullptr || s->second.record.backend() != name) {
          --pending_requests;
          rp.deliver(invalid_token());
          return;
        }
        exchange_found(req, bid, rp);
      },
      [this, rp, name = be->name](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(from_cloud(name, std::move(err)));
      });
  return;
}

void lease_manager_state::exchange_found(const exchange_request& req,
                                         const std::string& bid,
                                         reply<lease> rp) {
  auto found = live(bid)->second.record.unpack(bid);
  swap_at_backend(*this, found, req, rp,
                  [this, rp, bid](cloud_token& token, std::string& merged) {
                    // The new value gets a fresh term of the lease's current
                    // ttl, also when a renew changed it meanwhile. Only an
                    // exchange changes meta, and only one exchange of a value
                    // swaps, so the meta merged before is still current.
                    auto swap = [this, &token, &merged](lease& x) {
                      auto now = now_ms();
                      x.value = std::move(token.value);
                      x.meta = std::move(merged);
                      x.last_access_ms = now;
                      x.expires_ms = std::min(now + x.ttl_ms,
                                              x.issued_ms + cfg.max_ttl_ms);
                      x.ttl_ms = x.expires_ms - now;
                    };
                    store_update(*this, bid, swap, rp, ec::invalid_token);
                  });
}

// -- shared storage: the database decides (several instances) -----------------

namespace {

/// Storage names the id in its not_found; a client hears the action's own
/// failure, which never does.
caf::error update_failed(caf::error err, ec gone) {
  auto code = code_of(err);
  if (code == ec::not_found || code == ec::invalid_token)
    return gone == ec::not_found ? not_found() : invalid_token();
  return lease_manager_state::from_storage(std::move(err));
}

/// Sends a conditional change of a live lease (`verb`: renew or exchange)
/// to shared storage; the client gets the lease as stored (and `more`),
/// which this instance watches from now on, or the action's failure.
template <class Verb, class Promise, class... More>
void store_live(lease_manager_state& st, Verb verb, live_update u, Promise rp,
                ec gone, More... more) {
  st.self->request(st.cfg.storage, caf::infinite, verb, std::move(u))
    .then(
      [&st, rp, more...](lease& stored) mutable {
        --st.pending_requests;
        st.watch(stored);
        rp.deliver(std::move(stored), more...);
      },
      [&st, rp, gone](caf::error& err) mutable {
        --st.pending_requests;
        rp.deliver(update_failed(std::move(err), gone));
      });
}

} // namespace

void lease_manager_state::renew_shared(const std::string& id, int64_t ttl,
                                       reply<lease, bool> rp) {
  if (overloaded()) {
    rp.deliver(overload_error());
    return;
  }
  ++pending_requests;
  self->request(cfg.storage, caf::infinite, atom::get_v, id)
    .then(
      [this, rp, ttl](lease& x) mutable {
        if (x.state != state_active || x.expires_ms <= now_ms()) {
          --pending_requests;
          rp.deliver(not_found());
          return;
        }
        renew_found(x, ttl, rp);
      },
      [this, rp](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(update_failed(std::move(err), ec::not_found));
      });
  return;
}

/// The backend first, then the database, where the renew takes only while
/// the lease is live: one revoked meanwhile at any instance stays revoked.
void lease_manager_state::renew_found(const lease& x, int64_t ttl,
                                      reply<lease, bool> rp) {
  if (ttl == use_default_ttl)
    ttl = x.ttl_ms;
  if (auto err = renew_refused(x.renewable, x.backend, ttl)) {
    --pending_requests;
    rp.deliver(std::move(err));
    return;
  }
  live_update u;
  u.id = x.id;
  u.now_ms = now_ms();
  auto end = renewal_end(cfg, x.issued_ms, u.now_ms, ttl);
  u.expires_ms = end.first;
  bool capped = end.second;
  u.ttl_ms = u.expires_ms - u.now_ms;
  auto* be = backend(x.backend);
  self
    ->request(be->actor, timeout_of(*be), atom::renew_v, x.backend_id, u.ttl_ms)
    .then(
      [this, rp, u, capped](atom::ok) mutable {
        store_live(*this, atom::renew_v, u, rp, ec::not_found, capped);
      },
      [this, rp, name = be->name](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(from_cloud(name, std::move(err)));
      });
}

/// The stored lease holds the value (no instance keeps one-time tokens in
/// memory): checked against it here, swapped there only if still current.
void lease_manager_state::exchange_shared(const exchange_request& req,
                                          const std::string& bid,
                                          reply<lease> rp) {
  self->request(cfg.storage, caf::infinite, atom::get_v, bid)
    .then(
      [this, rp, req](lease& x) mutable {
        if (x.state != state_active || x.expires_ms <= now_ms()
            || x.backend != req.backend
            || !constant_time_equal(x.value, req.value)) {
          --pending_requests;
          rp.deliver(invalid_token());
          return;
        }
        swap_stored(std::move(x), req, rp);
      },
      [this, rp](caf::error& err) mutable {
        --pending_requests;
        rp.deliver(update_failed(std::move(err), ec::invalid_token));
      });
}

void lease_manager_state::swap_stored(lease found, const exchange_request& req,
                                      reply<lease> rp) {
  swap_at_backend(
    *this, found, req, rp,
    [this, rp, req, id = found.id](cloud_token& token, std::string& merged) {
      live_update u;
      u.id = id;
      u.now_ms = now_ms();
      u.old_value = req.value;
      u.new_value = std::move(token.value);
      u.meta = std::move(merged);
      u.max_ttl_ms = cfg.max_ttl_ms;
      // Of two exchanges of one value, only one finds it here.
      store_live(*this, atom::exchange_v, std::move(u), rp, ec::invalid_token);
    });
}

} // namespace tlm
