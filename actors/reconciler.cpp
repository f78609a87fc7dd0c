#include "actors/reconciler.hpp"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <caf/all.hpp>

namespace tlm {

namespace {

using std::chrono::milliseconds;

struct reconciler_state {
  static inline const char* name = "reconciler";

  reconciler_actor::pointer self = nullptr;
  reconciler_config cfg;
  /// Intent records not reconciled yet, by backend name.
  std::map<std::string, std::set<std::string>> intents;
  /// When the pending tick fires, if one is pending.
  std::optional<caf::actor_clock::time_point> due;

  const backend_handle* backend(const std::string& name) const {
    for (auto& be : cfg.backends)
      if (be.name == name)
        return &be;
    return nullptr;
  }

  caf::duration timeout_of(const backend_handle& be) const {
    if (!be.remote)
      return caf::duration{caf::infinite};
    return caf::duration{be.timeout.count() > 0 ? be.timeout
                                                : cfg.cloud_timeout};
  }

  /// How long a create at the backend may take, at least the minimum.
  int64_t timeout_ms_of(const std::string& name) const {
    auto* be = backend(name);
    if (be == nullptr || !be->remote)
      return cfg.min_delay_ms;
    auto t = be->timeout.count() > 0 ? be->timeout : cfg.cloud_timeout;
    return t.count();
  }

  void add(const std::string& name, const std::set<std::string>& ids,
           int64_t delay_ms) {
    intents[name].insert(ids.begin(), ids.end());
    if (delay_ms == 0)
      reconcile_backend(name);
    else
      reconcile_later(delay_ms);
  }

  void on_tick() {
    if (due && *due <= self->clock().now())
      due.reset();
    for (auto& [name, _] : intents)
      reconcile_backend(name);
  }

  void reconcile_backend(const std::string& name) {
    auto* be = backend(name);
    if (be == nullptr)
      return; // kept: the backend may come back into the config
    // Only the intents known now: ones added meanwhile need their own look.
    auto ids = intents[name];
    self->request(be->actor, timeout_of(*be), atom::get_all_v)
      .then(
        [this, name, ids](std::vector<cloud_token>& tokens) {
          std::vector<std::string> orphans;
          for (auto& token : tokens)
            if (ids.count(token.lease_id) > 0)
              orphans.push_back(token.backend_id);
          revoke_orphans(name, ids, std::move(orphans));
        },
        [this, name](caf::error&) { retry_later(name); });
  }

  void retry_later(const std::string& name) {
    reconcile_later(std::max(cfg.retry_ms, timeout_ms_of(name)));
  }

  void revoke_orphans(const std::string& name, const std::set<std::string>& ids,
                      std::vector<std::string> orphans) {
    if (orphans.empty()) {
      drop_intents(name, ids);
      return;
    }
    auto* be = backend(name);
    auto left = std::make_shared<size_t>(orphans.size());
    auto failed = std::make_shared<bool>(false);
    auto done = [this, name, ids, left, failed] {
      if (--*left > 0)
        return;
      if (*failed)
        retry_later(name);
      else
        drop_intents(name, ids);
    };
    for (auto& id : orphans)
      self->request(be->actor, timeout_of(*be), atom::revoke_v, id)
        .then([done](atom::ok) mutable { done(); },
              [done, failed](caf::error&) mutable {
                *failed = true;
                done();
              });
  }

  void drop_intents(const std::string& name, const std::set<std::string>& ids) {
    auto& known = intents[name];
    for (auto& id : ids) {
      known.erase(id);
      // Nobody waits for it; a failed removal is retried at the next start.
      caf::anon_send(cfg.storage, atom::remove_v, id);
    }
    if (known.empty())
      intents.erase(name);
  }

  /// Runs a look at every backend in `delay_ms`, unless one runs sooner.
  void reconcile_later(int64_t delay_ms) {
    auto now = self->clock().now();
    auto at = now + milliseconds(std::max(cfg.min_delay_ms, delay_ms));
    if (due && *due <= at)
      return;
    due = at;
    self->delayed_send(self, at - now, atom::tick_v);
  }
};

} // namespace

reconciler_actor spawn_reconciler(caf::actor_system& sys,
                                  reconciler_config cfg) {
  using self_ptr = reconciler_actor::stateful_pointer<reconciler_state>;
  auto init = [](self_ptr self,
                 reconciler_config cfg) -> reconciler_actor::behavior_type {
    self->state.self = self;
    self->state.cfg = std::move(cfg);
    return {
      [self](atom::reconcile, const std::string& backend,
             const std::set<std::string>& ids,
             int64_t delay_ms) { self->state.add(backend, ids, delay_ms); },
      [self](atom::tick) { self->state.on_tick(); },
    };
  };
  return sys.spawn(init, std::move(cfg));
}

} // namespace tlm
