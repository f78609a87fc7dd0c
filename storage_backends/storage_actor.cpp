#include "storage_backends/storage_actor.hpp"

#include <unordered_map>

#include <caf/all.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/text.hpp"
#include "storage_backends/memory/memory_backend.hpp"
#include "storage_backends/postgres/postgres_backend.hpp"
#include "storage_backends/sqlite/sqlite_backend.hpp"

namespace tlm {

namespace {

caf::error not_shared() {
  return make_error(ec::storage_error,
                    "this storage is not shared by several instances");
}

/// Calls of shared storage by lease id (reads, claims) waiting for the
/// next `commit`.
struct id_batch {
  std::vector<std::string> ids;
  std::vector<caf::typed_response_promise<lease>> waiting;
  int64_t now_ms = 0; ///< Claims: the latest asker's clock.

  bool empty() const {
    return waiting.empty();
  }

  caf::typed_response_promise<lease> add(storage_actor::pointer self,
                                         const std::string& id, int64_t now) {
    ids.push_back(id);
    now_ms = std::max(now_ms, now);
    waiting.push_back(self->make_response_promise<lease>());
    return waiting.back();
  }

  /// Answers each asker from the rows of one statement: an id without a
  /// row is not found, and one asked twice gets its row once (a claim is
  /// one asker's).
  void answer(caf::expected<std::vector<lease>> rows) {
    std::unordered_map<std::string, lease*> by_id;
    if (rows)
      for (auto& x : *rows)
        by_id.emplace(x.id, &x);
    for (size_t i = 0; i < waiting.size(); ++i) {
      auto found = by_id.find(ids[i]);
      if (!rows)
        waiting[i].deliver(rows.error());
      else if (found == by_id.end() || found->second == nullptr)
        waiting[i].deliver(
          make_error(ec::not_found, "no stored lease has this id"));
      else {
        waiting[i].deliver(*found->second);
        found->second = nullptr;
      }
    }
    *this = id_batch{};
  }
};

struct storage_state {
  static inline const char* name = "storage";

  std::unique_ptr<storage_backend> backend;
  std::vector<storage_write> batch;
  std::vector<caf::typed_response_promise<atom::ok>> waiting;
  /// Reads and claims of shared storage waiting for the next `commit`:
  /// one statement each answers them all.
  id_batch reads;
  id_batch claims;
  caf::actor watcher;
  bool failing = false;

  /// Tells the watcher, and the log, when calls start or stop failing.
  void note(const caf::error& err) {
    if (static_cast<bool>(err) == failing)
      return;
    failing = static_cast<bool>(err);
    auto why = failing ? cut_utf8(message_of(err), max_error_bytes)
                       : std::string{};
    if (failing)
      log_line("error", "the lease storage fails: " + why);
    else
      log_line("info", "the lease storage works again");
    if (watcher)
      caf::anon_send(watcher, atom::storage_v, !failing, why);
  }

  template <class T>
  caf::result<T> checked(caf::expected<T> x) {
    // A lease not found (or no longer live) is an answer, not a failure.
    bool failed = !x && code_of(x.error()) == ec::storage_error;
    note(failed ? x.error() : caf::error{});
    return to_result(std::move(x));
  }

  /// Runs a call of the shared side after every write sent before it, so
  /// a claim or a conditional change never overtakes a queued save.
  template <class Call>
  auto shared_call(Call call)
    -> decltype(checked(call(std::declval<shared_storage&>()))) {
    auto* shared = backend->shared();
    if (shared == nullptr)
      return not_shared();
    if (auto err = commit())
      return err;
    return checked(call(*shared));
  }

  /// Queues a write; the first of a batch sends the `commit` that closes
  /// it, behind every write already waiting in the mailbox.
  caf::typed_response_promise<atom::ok> enqueue(storage_actor::pointer self,
                                                storage_write write) {
    close_batch_later(self);
    batch.push_back(std::move(write));
    waiting.push_back(self->make_response_promise<atom::ok>());
    return waiting.back();
  }

  /// The first write or shared call of a batch sends the `commit` that
  /// closes it, behind everything already waiting in the mailbox.
  void close_batch_later(storage_actor::pointer self) {
    if (batch.empty() && reads.empty() && claims.empty())
      self->send(self, atom::commit_v);
  }

  /// A call of shared storage by lease id, answered when its batch closes.
  caf::result<lease> batched(storage_actor::pointer self, id_batch& into,
                             const std::string& id, int64_t now_ms = 0) {
    if (backend->shared() == nullptr)
      return not_shared();
    close_batch_later(self);
    return into.add(self, id, now_ms);
  }

  caf::result<lease> get(storage_actor::pointer self, const std::string& id) {
    if (backend->shared() == nullptr)
      return checked(backend->get(id));
    return batched(self, reads, id);
  }

  /// Closes a batch: the writes commit, then the reads and claims that
  /// came with them run, a statement each.
  caf::error close() {
    auto err = commit();
    if (!reads.empty())
      reads.answer(checked_rows(backend->shared()->get_many(reads.ids)));
    if (!claims.empty())
      claims.answer(
        checked_rows(backend->shared()->claim_live(claims.ids, claims.now_ms)));
    return err;
  }

  caf::expected<std::vector<lease>>
  checked_rows(caf::expected<std::vector<lease>> rows) {
    note(rows ? caf::error{} : rows.error());
    return rows;
  }

  caf::error commit() {
    if (batch.empty())
      return caf::none;
    auto err = backend->apply(batch);
    note(err);
    batch.clear();
    for (auto& rp : waiting) {
      if (err)
        rp.deliver(err);
      else
        rp.deliver(atom::ok_v);
    }
    waiting.clear();
    return err;
  }
};

storage_actor::behavior_type
storage_behavior(storage_actor::stateful_pointer<storage_state> self,
                 std::shared_ptr<std::unique_ptr<storage_backend>> backend) {
  self->state.backend = std::move(*backend);
  return {
    [self](atom::save, lease& record) {
      return self->state.enqueue(self,
                                 {storage_write::save, std::move(record)});
    },
    [self](atom::save, std::vector<lease>& records) {
      if (records.empty()) {
        auto rp = self->make_response_promise<atom::ok>();
        rp.deliver(atom::ok_v);
        return rp;
      }
      self->state.close_batch_later(self);
      auto last = std::move(records.back());
      records.pop_back();
      for (auto& x : records)
        self->state.batch.push_back({storage_write::save, std::move(x)});
      // One answer for them all: the last write's, after the same commit.
      return self->state.enqueue(self, {storage_write::save, std::move(last)});
    },
    [self](atom::remove, std::string& id) {
      lease key;
      key.id = std::move(id);
      return self->state.enqueue(self, {storage_write::remove, std::move(key)});
    },
    [self](atom::save, revoke_job& job) {
      return self->state.enqueue(self,
                                 {storage_write::save_job, {}, std::move(job)});
    },
    [self](atom::remove, atom::job, std::string& id) {
      revoke_job key;
      key.id = std::move(id);
      return self->state.enqueue(
        self, {storage_write::remove_job, {}, std::move(key)});
    },
    [self](atom::load, atom::job) {
      return self->state.checked(self->state.backend->load_jobs());
    },
    [self](atom::load, const std::string& after, uint32_t max) {
      return self->state.checked(self->state.backend->load(after, max));
    },
    [self](atom::list, const lease_filter& filter) {
      return self->state.checked(self->state.backend->list(filter));
    },
    [self](atom::get, const std::string& id) {
      return self->state.get(self, id);
    },
    [self](atom::claim, const std::vector<std::string>& ids, int64_t now) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.claim_due(ids, now); });
    },
    [self](atom::claim, const std::string& id, int64_t now) {
      return self->state.batched(self, self->state.claims, id, now);
    },
    [self](atom::claim, const revoke_job& job, const orphan_query& q) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.claim_matching(job, q); });
    },
    [self](atom::orphans, const orphan_query& q) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.claim_orphans(q); });
    },
    [self](atom::renew, const live_update& u) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.renew_live(u); });
    },
    [self](atom::exchange, const live_update& u) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.swap_live(u); });
    },
    [self](atom::health, int64_t now) {
      return self->state.shared_call(
        [&](shared_storage& s) { return s.count(now); });
    },
    [self](atom::watch, caf::actor& watcher) {
      self->state.watcher = std::move(watcher);
    },
    [self](atom::flush) -> caf::result<atom::ok> {
      auto err = self->state.close();
      if (err)
        return err;
      return atom::ok_v;
    },
    [self](atom::commit) { self->state.close(); },
  };
}

} // namespace

caf::expected<std::unique_ptr<storage_backend>>
make_storage_backend(const std::string& spec,
                     const std::string& password_file) {
  if (spec == "memory")
    return std::unique_ptr<storage_backend>{make_memory_backend()};
  if (spec.rfind("sqlite:", 0) == 0 && spec.size() > 7)
    return make_sqlite_backend(spec.substr(7));
  // A URI goes to libpq whole; `postgres:` prefixes a key=value string.
  if (spec.rfind("postgresql://", 0) == 0 || spec.rfind("postgres://", 0) == 0)
    return make_postgres_backend(spec, password_file);
  if (spec.rfind("postgres:", 0) == 0)
    return make_postgres_backend(spec.substr(9), password_file);
  return make_error(ec::invalid_request,
                    "storage must be 'memory', 'sqlite:PATH', "
                    "'postgresql://...' or 'postgres:KEY=VALUE ...', not '"
                      + spec + "'");
}

storage_actor spawn_storage_actor(caf::actor_system& sys,
                                  std::unique_ptr<storage_backend> backend) {
  // CAF copies spawn arguments, so the unique_ptr travels in a shared_ptr.
  bool blocking = backend->blocking();
  auto box = std::make_shared<std::unique_ptr<storage_backend>>(
    std::move(backend));
  if (blocking)
    return sys.spawn<caf::detached>(storage_behavior, std::move(box));
  return sys.spawn(storage_behavior, std::move(box));
}

} // namespace tlm
