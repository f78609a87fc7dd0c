#include "actors/lease_manager.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "actors/expiry_schedule.hpp"
#include "core/lease_key.hpp"
#include "core/log.hpp"
#include "core/packed_lease.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr size_t lease_id_bytes = 16; // 22 base64url characters

constexpr size_t initial_capacity = 1 << 21;

/// Due schedule entries handled per message (see `process_due`).
constexpr size_t due_per_tick = 4096;

/// How far the revocation of a lease has come, in this process. The stored
/// `record.state` is what survives a restart; this is the work in hand.
enum class revocation {
  none,     ///< Not begun: the lease lives until `expires_ms`.
  running,  ///< In flight, or queued in its backend's lane; dead at the API.
  waiting,  ///< Failed; waits for `due_ms` to try again.
};

struct lease_entry {
  packed_lease record;
  revocation progress = revocation::none;
  int64_t due_ms = 0;  ///< The schedule entry that counts for this lease.
  uint32_t job = 0;    ///< Number of the revoke job it belongs to; 0: none.
};

int64_t system_now_ms() {
  return duration_cast<milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

struct lease_manager_state {
  static inline const char* name = "lease_manager";

  lease_manager_actor::pointer self = nullptr;
  lease_manager_config cfg;
  std::unordered_map<std::string, backend_handle> backends;
  using lease_table = std::unordered_map<lease_key, lease_entry, lease_key_hash>;
  using slot = lease_table::value_type;
  lease_table leases;
  expiry_schedule schedule;
  size_t dead_leases = 0;  ///< Entries revoking or waiting for a retry.
  /// How revocations fare per backend name (also names no longer
  /// configured, whose leases live on in storage).
  std::map<std::string, backend_health, std::less<>> revocation_health;
  size_t quarantined = 0;
  size_t revocations_in_flight = 0;
  std::vector<caf::typed_response_promise<atom::ok>> waiting_for_drain;
  /// Revocations per backend: in flight, and due ones waiting their turn.
  struct revocation_lane {
    size_t in_flight = 0;
    size_t limit = 1;
    std::deque<lease_key> waiting;
  };
  std::unordered_map<std::string, revocation_lane> lanes;
  size_t pending_requests = 0;
  std::optional<int64_t> armed_due;  ///< Deadline of the pending tick.
  bool loaded = false;
  /// Intent records left by a crash, by backend name.
  std::map<std::string, std::set<std::string>> intents;
  std::optional<int64_t> reconcile_due;
  std::minstd_rand jitter{std::random_device{}()}; // timing only, no secret
  std::vector<caf::typed_response_promise<uint64_t>> waiting_for_ready;
  /// Bulk revocation jobs by number, in order of start; a lease names its
  /// job by number (0: none). Finished ones leave after a day.
  std::map<uint32_t, revoke_job> jobs;
  uint32_t last_job_number = 0;
  std::unordered_map<std::string, uint32_t> job_number;
  /// Leases of started jobs not yet handed to their lanes: (job, leases).
  std::deque<std::pair<uint32_t, std::vector<lease_key>>> to_revoke;
  /// Start of the newest job: leases issued later never match it, so a
  /// restarted job finds exactly the leases it began with.
  int64_t newest_job_ms = 0;
  int64_t start_wall_ms = 0;
  caf::actor_clock::time_point start_clock;

  // -- time ------------------------------------------------------------------

  int64_t now_ms() const {
    auto elapsed = self->clock().now() - start_clock;
    return start_wall_ms + duration_cast<milliseconds>(elapsed).count();
  }

  // -- lookups ---------------------------------------------------------------

  /// The lease with this id, or null.
  slot* find(const std::string& id) {
    auto key = lease_key::of(id);
    if (!key)
      return nullptr;
    auto i = leases.find(*key);
    return i == leases.end() ? nullptr : &*i;
  }

  /// Active, unexpired, and not picked by a revoke job.
  bool is_live(const lease_entry& entry) const {
    return entry.progress == revocation::none && entry.job == 0
           && now_ms() < entry.record.expires_ms;
  }

  /// A lease the API may still see, or null.
  slot* live(const std::string& id) {
    auto* s = find(id);
    return s != nullptr && is_live(s->second) ? s : nullptr;
  }

  /// The deadline of one call to a remote backend.
  milliseconds remote_timeout(const backend_handle& be) const {
    return be.timeout.count() > 0 ? be.timeout : cfg.cloud_timeout;
  }

  caf::duration timeout_of(const backend_handle& be) const {
    if (be.remote)
      return caf::duration{remote_timeout(be)};
    return caf::duration{caf::infinite};
  }

  const backend_handle* backend(const std::string& name) const {
    auto i = backends.find(name);
    return i == backends.end() ? nullptr : &i->second;
  }

  const backend_handle* backend(std::string_view name) const {
    return backend(std::string{name});
  }

  uint64_t live_count() const {
    return leases.size() - dead_leases;
  }

  /// A lease `get` shows: a live one, or an irrevocable one (with its last
  /// error, for operators).
  const slot* visible(const std::string& id) {
    auto* s = find(id);
    if (s != nullptr
        && (is_live(s->second)
            || s->second.record.state == record_state::irrevocable))
      return s;
    return nullptr;
  }

  static caf::error not_found() {
    // Never the id itself: a client may have sent a token by mistake.
    return make_error(ec::not_found, "no live lease has this token_id");
  }

  /// Errors from outside our category get a code from the place they came
  /// from: a silent backend is unavailable, a silent storage is an error.
  static caf::error from_cloud(const std::string& name, caf::error err) {
    if (err.category() == caf::atom("tlm"))
      return err;
    if (err == caf::sec::request_timeout)
      return make_error(ec::backend_unavailable,
                        "backend '" + name + "' did not answer in time");
    return make_error(ec::backend_unavailable,
                      "backend '" + name + "' is unavailable");
  }

  static caf::error from_storage(caf::error err) {
    if (err.category() == caf::atom("tlm"))
      return err;
    return make_error(ec::storage_error,
                      "the lease storage did not answer in time");
  }

  bool overloaded() const {
    return pending_requests >= cfg.max_pending_requests;
  }

  caf::error overload_error() const {
    return make_error(ec::overloaded,
                      "too many requests are waiting; retry shortly");
  }

  // -- schedule --------------------------------------------------------------

  void schedule_at(slot& s, int64_t due_ms) {
    s.second.due_ms = due_ms;
    schedule.add(due_ms, s.first);
    arm_timer();
  }

  /// Keeps exactly one tick pending for the earliest deadline.
  void arm_timer() {
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

  void on_tick(int64_t due) {
    if (armed_due && *armed_due == due)
      armed_due.reset();
    process_due();
  }

  /// Starts revocations for due entries, a bounded number per message so
  /// that a restart with a million expired leases keeps answering
  /// requests; a backend at its limit gets them queued, in deadline order.
  void process_due() {
    auto now = now_ms();
    size_t budget = due_per_tick;
    while (budget-- > 0) {
      auto next = schedule.pop_due(now);
      if (!next)
        break;
      auto i = leases.find(next->key);
      if (i == leases.end() || i->second.due_ms != next->due_ms
          || i->second.progress == revocation::running)
        continue; // stale: renewed, revoked, or already being revoked
      queue_revocation(*i);
    }
    if (schedule.size() > 2 * leases.size() + 1024)
      compact_schedule();
    arm_timer();
  }

  /// Drops stale heap entries left by renewals.
  void compact_schedule() {
    schedule.clear();
    for (auto& [key, entry] : leases)
      if (entry.progress != revocation::running)
        schedule.add(entry.due_ms, key);
    armed_due.reset();
  }

  void mark_dead(lease_entry& entry, revocation step) {
    if (entry.progress == revocation::none)
      ++dead_leases;
    entry.progress = step;
  }

  void erase(const lease_key& key) {
    auto i = leases.find(key);
    if (i == leases.end())
      return;
    if (i->second.progress != revocation::none)
      --dead_leases;
    bool irrevocable = i->second.record.state == record_state::irrevocable;
    count_trouble(i->second.record, false);
    if (auto number = i->second.job)
      job_lease_gone(number, irrevocable);
    leases.erase(i);
  }

  // -- revocation health -----------------------------------------------------

  backend_health& health_of(std::string_view backend_name) {
    auto i = revocation_health.find(backend_name);
    if (i == revocation_health.end()) {
      i = revocation_health.emplace(std::string{backend_name}, backend_health{})
            .first;
      i->second.name = i->first;
    }
    return i->second;
  }

  /// Counts a lease in trouble for its backend (`add`) or stops counting
  /// it: irrevocable, or retrying after a failed attempt (its last error
  /// is set). Called around every change of those two fields.
  void count_trouble(const packed_lease& record, bool add) {
    uint64_t backend_health::*counter = nullptr;
    if (record.state == record_state::irrevocable)
      counter = &backend_health::irrevocable;
    else if (!record.last_error().empty())
      counter = &backend_health::retrying;
    if (counter == nullptr)
      return;
    auto& n = health_of(record.backend()).*counter;
    n = add ? n + 1 : n - 1;
  }

  /// A backend's revocations start failing, or keep failing: logged once
  /// when they start, then only counted.
  void revocation_failed(std::string_view backend_name,
                         const caf::error& err) {
    auto& h = health_of(backend_name);
    h.last_error = message_of(err).substr(0, 240);
    if (h.failed_attempts++ == 0)
      log_line("error", "backend '" + h.name
                          + "' fails to revoke tokens: " + h.last_error
                          + "; retrying with backoff");
  }

  /// A backend confirmed a revocation: logged once if it was failing.
  void revocation_worked(std::string_view backend_name) {
    auto& h = health_of(backend_name);
    if (h.failed_attempts == 0)
      return;
    log_line("info", "backend '" + h.name + "' revokes tokens again, after "
                       + std::to_string(h.failed_attempts)
                       + " failed attempts");
    h.failed_attempts = 0;
    h.last_error.clear();
  }

  health_report health() {
    health_report report{live_count(), 0, quarantined, {}};
    for (auto& [name, _] : backends)
      health_of(name);
    for (auto& [_, h] : revocation_health) {
      report.irrevocable += h.irrevocable;
      report.backends.push_back(h);
    }
    return report;
  }

  // -- revocation ------------------------------------------------------------

  /// Revokes at the cloud first, then forgets the lease in storage. `done`
  /// gets the cloud's verdict; storage failures leave the lease for a retry.
  template <class Done>
  void revoke(slot& s, Done done) {
    auto key = s.first;
    auto& entry = s.second;
    auto* be = backend(entry.record.backend());
    mark_dead(entry, revocation::running);
    entry.due_ms = -1;
    if (be == nullptr) {
      // A backend removed from the config while its leases live on.
      auto err = make_error(ec::unknown_backend,
                            "lease '" + key.str() + "' names backend '"
                              + std::string{entry.record.backend()}
                              + "', which is not configured");
      revocation_failed(entry.record.backend(), err);
      done(std::move(err));
      return;
    }
    ++lane_of(be->name).in_flight;
    ++revocations_in_flight;
    auto name = be->name;
    self->request(be->actor, timeout_of(*be), atom::revoke_v,
                  std::string{entry.record.backend_id(key.view())})
      .then(
        [this, name, key, done](atom::ok) mutable {
          revocation_worked(name);
          self->request(cfg.storage, caf::infinite, atom::remove_v, key.str())
            .then(
              [this, name, key, done](atom::ok) mutable {
                erase(key);
                finish_revocation(name, caf::none, done);
              },
              [this, name, key, done](caf::error& err) mutable {
                // The token is dead; only the record is left. Retry both
                // (revoke is idempotent) and tell the client it worked.
                retry_later(key, from_storage(std::move(err)));
                finish_revocation(name, caf::none, done);
              });
        },
        [this, name, done](caf::error& err) mutable {
          err = from_cloud(name, std::move(err));
          revocation_failed(name, err);
          finish_revocation(name, std::move(err), done);
        });
  }

  template <class Done>
  void finish_revocation(const std::string& backend_name, caf::error err,
                         Done& done) {
    auto& lane = lane_of(backend_name);
    --lane.in_flight;
    --revocations_in_flight;
    done(std::move(err));
    if (revocations_in_flight == 0) {
      for (auto& rp : waiting_for_drain)
        rp.deliver(atom::ok_v);
      waiting_for_drain.clear();
    }
    // The freed slot goes to the next lease of this backend waiting.
    while (lane.in_flight < lane.limit && !lane.waiting.empty()) {
      auto key = lane.waiting.front();
      lane.waiting.pop_front();
      auto i = leases.find(key);
      if (i != leases.end() && i->second.due_ms == -1
          && i->second.progress == revocation::running)
        start_expiry_revocation(*i);
    }
  }

  revocation_lane& lane_of(std::string_view backend_name) {
    std::string name{backend_name};
    auto i = lanes.find(name);
    if (i != lanes.end())
      return i->second;
    auto& lane = lanes[name];
    auto* be = backend(backend_name);
    lane.limit = be != nullptr && be->remote
                   ? std::max<size_t>(1, 2 * be->concurrency)
                   : cfg.max_concurrent_revocations;
    return lane;
  }

  /// Revokes now if the lease's backend has a free slot, else queues it
  /// behind the others waiting for that backend.
  void queue_revocation(slot& s) {
    auto& entry = s.second;
    auto& lane = lane_of(entry.record.backend());
    if (lane.in_flight < lane.limit) {
      start_expiry_revocation(s);
      return;
    }
    mark_dead(entry, revocation::running);
    entry.due_ms = -1;
    lane.waiting.push_back(s.first);
  }

  void start_expiry_revocation(slot& s) {
    revoke(s, [this, key = s.first](caf::error err) {
      if (err)
        retry_later(key, err);
    });
  }

  /// Exponential backoff with full jitter; the lease stays dead and stored
  /// until a revocation succeeds, so nothing is ever dropped unrevoked.
  /// A throttled backend (`overloaded`) costs no attempt. After
  /// `max_revoke_attempts`, or at once when the failure cannot heal by
  /// itself (our credentials rejected, the backend gone from the config),
  /// the lease is `irrevocable`: persisted, logged once, retried every
  /// `retry_max_ms`.
  void retry_later(const lease_key& key, const caf::error& err) {
    auto i = leases.find(key);
    if (i == leases.end())
      return;
    auto& entry = i->second;
    auto& record = entry.record;
    mark_dead(entry, revocation::waiting);
    count_trouble(record, false);
    auto code = code_of(err);
    if (code != ec::overloaded)
      ++record.attempts;
    record.set_last_error(message_of(err).substr(0, 240));
    bool hopeless = code == ec::backend_error || code == ec::unknown_backend;
    if (record.state == record_state::active) {
      // An expired lease whose first revocation failed: stored as revoking,
      // with its attempts, so a restart neither forgets them nor shows it.
      // (One that succeeds at once is never written twice: its past
      // `expires` says as much.)
      record.state = record_state::revoking;
      save_quietly(key, record);
    }
    if (record.state != record_state::irrevocable
        && (hopeless || record.attempts >= cfg.max_revoke_attempts)) {
      record.state = record_state::irrevocable;
      if (entry.job != 0)
        ++jobs.at(entry.job).irrevocable;
      log_line("error", "lease '" + key.str() + "' at backend '"
                          + std::string{record.backend()}
                          + "' is irrevocable after "
                          + std::to_string(record.attempts)
                          + " failed attempts: "
                          + std::string{record.last_error()});
      save_quietly(key, record);
    }
    count_trouble(record, true);
    int64_t delay = cfg.retry_max_ms;
    if (record.state != record_state::irrevocable) {
      auto shift = std::min<uint32_t>(record.attempts, 20);
      auto ceiling = std::min(cfg.retry_max_ms,
                              cfg.retry_base_ms << (shift > 0 ? shift - 1 : 0));
      std::uniform_int_distribution<int64_t> pick{1, std::max<int64_t>(1, ceiling)};
      delay = pick(jitter);
    }
    schedule_at(*i, now_ms() + delay);
  }

  /// A storage write nobody waits for; a failed one is made good by the
  /// next change or the next start. Sent anonymously, so it leaves no
  /// pending response behind: CAF 0.17 keeps those in a flat map searched
  /// linearly, and a bulk revocation of a million leases made that
  /// quadratic (minutes; measured).
  template <class... Ts>
  void store_quietly(Ts&&... xs) {
    caf::anon_send(cfg.storage, std::forward<Ts>(xs)...);
  }

  void save_quietly(const lease_key& key, const packed_lease& record) {
    store_quietly(atom::save_v, record.unpack(key.str()));
  }

  // -- client actions --------------------------------------------------------

  caf::typed_response_promise<lease> create(create_request& req) {
    auto rp = self->make_response_promise<lease>();
    auto name = req.backend.empty() ? cfg.default_backend : req.backend;
    auto* be = backend(name);
    if (be == nullptr) {
      rp.deliver(make_error(ec::unknown_backend,
                            "no backend named '" + name + "' is configured"));
      return rp;
    }
    auto ttl = req.ttl_ms == use_default_ttl ? cfg.default_ttl_ms : req.ttl_ms;
    if (auto err = check_ttl(ttl)) {
      rp.deliver(std::move(err));
      return rp;
    }
    if (auto problem = client_data_problem(req.meta, req.description,
                                           req.tags);
        !problem.empty()) {
      rp.deliver(make_error(ec::invalid_request, std::move(problem)));
      return rp;
    }
    if (overloaded()) {
      rp.deliver(overload_error());
      return rp;
    }
    lease record;
    record.id = random_token(lease_id_bytes);
    record.backend = name;
    record.ttl_ms = ttl;
    record.renewable = req.renewable;
    record.tags = std::move(req.tags);
    record.meta = std::move(req.meta);
    record.description = std::move(req.description);
    ++pending_requests;
    if (!be->remote) {
      // A local token dies with the process unless its lease is stored, so
      // it needs no intent record.
      create_at_cloud(std::move(record), std::move(req.options), rp);
      return rp;
    }
    // Crash-safe creation: the intent is durable before the token exists,
    // so a crash in between leaves a record that start-up reconciles.
    record.state = state_pending;
    record.issued_ms = now_ms();
    record.expires_ms = record.issued_ms + ttl;
    self->request(cfg.storage, caf::infinite, atom::save_v, record)
      .then(
        [this, rp, record, options = std::move(req.options)](atom::ok) mutable {
          create_at_cloud(std::move(record), std::move(options), rp);
        },
        [this, rp](caf::error& err) mutable {
          --pending_requests;
          rp.deliver(from_storage(std::move(err)));
        });
    return rp;
  }

  void create_at_cloud(lease record, std::string options,
                       caf::typed_response_promise<lease> rp) {
    auto* be = backend(record.backend);
    auto name = be->name;
    self
      ->request(be->actor, timeout_of(*be), atom::create_v, record.id,
                record.ttl_ms, std::move(options),
                be->remote ? steady_deadline(remote_timeout(*be)) : 0)
      .then(
        [this, rp, record](cloud_token& token) mutable {
          record.backend_id = std::move(token.backend_id);
          record.value = std::move(token.value);
          record.issued_ms = std::max(now_ms(), newest_job_ms + 1);
          record.expires_ms = record.issued_ms + record.ttl_ms;
          record.state = state_active;
          store_new(std::move(record), rp);
        },
        [this, rp, name, record](caf::error& err) mutable {
          --pending_requests;
          err = from_cloud(name, std::move(err));
          if (record.state == state_pending) {
            auto code = code_of(err);
            if (code == ec::invalid_request || code == ec::backend_error) {
              // The backend said no: nothing was made, the intent goes.
              store_quietly(atom::remove_v, record.id);
            } else {
              // Timed out or cut off: the token may exist or still appear.
              // The intent stays; a look after the backend's own deadline,
              // when a slow create has finished one way or the other,
              // revokes what it finds.
              intents[record.backend].insert(record.id);
              reconcile_later(2 * timeout_ms_of(record.backend));
            }
          }
          rp.deliver(std::move(err));
        });
  }

  void store_new(lease record, caf::typed_response_promise<lease> rp) {
    self->request(cfg.storage, caf::infinite, atom::save_v, record)
      .then(
        [this, rp, record](atom::ok) mutable {
          --pending_requests;
          auto [i, added] = leases.try_emplace(*lease_key::of(record.id));
          i->second.record = packed_lease{record};
          schedule_at(*i, record.expires_ms);
          rp.deliver(std::move(record));
        },
        [this, rp, record](caf::error& err) mutable {
          --pending_requests;
          // The token exists but no lease holds it: take it back.
          if (auto* be = backend(record.backend))
            self->request(be->actor, timeout_of(*be), atom::revoke_v,
                          record.backend_id)
              .then([](atom::ok) {}, [](caf::error&) {});
          rp.deliver(from_storage(std::move(err)));
        });
  }

  caf::result<lease> get(const std::string& id) {
    if (auto* s = visible(id))
      return s->second.record.unpack(id);
    return not_found();
  }

  caf::typed_response_promise<atom::ok> revoke_by_client(
    const std::string& id, bool force) {
    auto rp = self->make_response_promise<atom::ok>();
    if (force)
      return force_drop(id, rp);
    auto* s = find(id);
    if (s != nullptr && !is_live(s->second)
        && s->second.record.state != record_state::active) {
      // Asked again while its backend has not confirmed: say so again.
      auto& record = s->second.record;
      rp.deliver(revocation_pending(
        record.backend(),
        record.last_error().empty() ? "it is under way"
                                    : std::string{record.last_error()}));
      return rp;
    }
    if (s == nullptr || !is_live(s->second)) {
      rp.deliver(not_found());
      return rp;
    }
    // The wish to revoke is stored first: a restart must not bring the
    // lease back to life while its backend is down.
    auto key = s->first;
    auto& entry = s->second;
    mark_dead(entry, revocation::running);
    entry.due_ms = -1;
    entry.record.state = record_state::revoking;
    self->request(cfg.storage, caf::infinite, atom::save_v,
                  entry.record.unpack(id))
      .then(
        [this, rp, key](atom::ok) mutable {
          auto i = leases.find(key);
          if (i == leases.end()) { // forced away meanwhile
            rp.deliver(atom::ok_v);
            return;
          }
          revoke(*i, [this, rp, key](caf::error err) mutable {
            if (!err) {
              rp.deliver(atom::ok_v);
              return;
            }
            // Never success before the backend confirmed: the lease stays
            // dead and the revocation is finished in the background.
            retry_later(key, err);
            auto i = leases.find(key);
            rp.deliver(revocation_pending(
              i != leases.end() ? i->second.record.backend() : "",
              message_of(err)));
          });
        },
        [this, rp, key](caf::error& err) mutable {
          auto i = leases.find(key);
          if (i != leases.end() && i->second.progress == revocation::running) {
            --dead_leases;
            i->second.progress = revocation::none;
            i->second.record.state = record_state::active;
            schedule_at(*i, i->second.record.expires_ms);
          }
          rp.deliver(from_storage(std::move(err)));
        });
    return rp;
  }

  /// The outcome of a client's revoke that the backend has not confirmed:
  /// the lease is dead here and stays stored until the backend does.
  static caf::error revocation_pending(std::string_view backend_name,
                                       const std::string& why) {
    return make_error(ec::revocation_pending,
                      "the lease is dead: tlmd will not serve it "
                        "again, but backend '" + std::string{backend_name}
                        + "' has not confirmed the revocation yet (" + why
                        + "); it is retried in the background until it "
                          "does (list with state revoking shows it)");
  }

  /// An operator's explicit choice: forget the lease without the
  /// backend's confirmation (e.g. the token was deleted by hand).
  caf::typed_response_promise<atom::ok>
  force_drop(const std::string& id, caf::typed_response_promise<atom::ok> rp) {
    auto* s = find(id);
    if (s == nullptr) {
      rp.deliver(not_found());
      return rp;
    }
    auto key = s->first;
    std::string backend_name{s->second.record.backend()};
    self->request(cfg.storage, caf::infinite, atom::remove_v, id)
      .then(
        [this, rp, id, key, backend_name](atom::ok) mutable {
          erase(key);
          log_line("warning", "lease '" + id + "' at backend '" + backend_name
                                + "' was dropped by force, without the "
                                  "backend's confirmation");
          rp.deliver(atom::ok_v);
        },
        [rp](caf::error& err) mutable {
          rp.deliver(from_storage(std::move(err)));
        });
    return rp;
  }

  caf::typed_response_promise<lease, bool> renew(const std::string& id,
                                                 int64_t ttl) {
    auto rp = self->make_response_promise<lease, bool>();
    auto* s = live(id);
    if (s == nullptr) {
      rp.deliver(not_found());
      return rp;
    }
    auto& record = s->second.record;
    if (!record.renewable) {
      rp.deliver(make_error(ec::not_renewable,
                            "the lease was not created renewable"));
      return rp;
    }
    if (ttl == use_default_ttl)
      ttl = record.ttl_ms;
    if (auto err = check_ttl(ttl)) {
      rp.deliver(std::move(err));
      return rp;
    }
    auto now = now_ms();
    // A total-life cap, as in Vault: renewals never pass issued + max ttl.
    auto cap = record.issued_ms + cfg.max_ttl_ms;
    bool capped = now + ttl > cap;
    auto expires = std::min(now + ttl, cap);
    auto* be = backend(record.backend());
    if (be == nullptr) {
      rp.deliver(make_error(ec::unknown_backend,
                            "backend '" + std::string{record.backend()}
                              + "' is not configured"));
      return rp;
    }
    if (overloaded()) {
      rp.deliver(overload_error());
      return rp;
    }
    auto term = expires - now;
    ++pending_requests;
    auto name = be->name;
    self
      ->request(be->actor, timeout_of(*be), atom::renew_v,
                std::string{record.backend_id(id)}, term)
      .then(
        [this, rp, id, term, expires, capped](atom::ok) mutable {
          auto extend = [term, expires](lease& x) {
            x.ttl_ms = term;
            x.expires_ms = expires;
          };
          store_update(id, extend, rp, ec::not_found, capped);
        },
        [this, rp, name](caf::error& err) mutable {
          --pending_requests;
          rp.deliver(from_cloud(name, std::move(err)));
        });
    return rp;
  }

  /// Applies an update to the lease as it is now and saves that, unless
  /// the lease died meanwhile (then the client gets `dead_code`); the reply
  /// is the lease as saved, and `more`. `change` sets only the fields its
  /// operation owns, so racing updates of one lease never undo each other
  /// (issue 9: a renew saved the copy it took before an exchange and
  /// brought the used value back). The index takes the update when the
  /// save is sent, not when it is confirmed: the next update starts from
  /// it, and storage applies writes in order, so no save carries stale
  /// fields. A failed save (its client is told) leaves the index ahead of
  /// storage until the next write of the lease, which carries it all.
  template <class Change, class Promise, class... More>
  void store_update(const std::string& id, Change change, Promise rp,
                    ec dead_code, More... more) {
    // A revoke may have begun while the backend answered; saving now would
    // bring the record back after the revoke's removal. Storage applies
    // writes in order, so one checked and sent here cannot pass a removal.
    auto* s = live(id);
    if (s == nullptr) {
      --pending_requests;
      rp.deliver(make_error(dead_code, "the lease ended meanwhile"));
      return;
    }
    auto updated = s->second.record.unpack(id);
    change(updated);
    s->second.record = packed_lease{updated};
    schedule_at(*s, updated.expires_ms);
    self->request(cfg.storage, caf::infinite, atom::save_v, updated)
      .then(
        [this, rp, updated, dead_code, more...](atom::ok) mutable {
          --pending_requests;
          if (live(updated.id) == nullptr) {
            rp.deliver(make_error(dead_code, "the lease ended meanwhile"));
            return;
          }
          rp.deliver(std::move(updated), more...);
        },
        [this, rp](caf::error& err) mutable {
          --pending_requests;
          rp.deliver(from_storage(std::move(err)));
        });
  }

  caf::typed_response_promise<lease_page> list(list_query& query) {
    auto rp = self->make_response_promise<lease_page>();
    query.now_ms = now_ms();
    self->request(cfg.storage, caf::infinite, atom::list_v, query)
      .then([rp, now = query.now_ms](lease_page& page) mutable {
              // An expired record not yet rewritten is on its way out too.
              for (auto& x : page.leases)
                if (x.state == state_active && x.expires_ms <= now)
                  x.state = state_revoking;
              rp.deliver(std::move(page));
            },
            [rp](caf::error& err) mutable {
              rp.deliver(from_storage(std::move(err)));
            });
    return rp;
  }

  const backend_handle* exchange_backend(const std::string& name) const {
    if (!name.empty())
      return backend(name);
    auto* preferred = backend(cfg.default_backend);
    if (preferred != nullptr && preferred->exchangeable)
      return preferred;
    for (auto& [_, handle] : backends)
      if (handle.exchangeable)
        return &handle;
    return nullptr;
  }

  caf::typed_response_promise<lease> exchange(const std::string& name,
                                              const std::string& value,
                                              const std::string& meta) {
    auto rp = self->make_response_promise<lease>();
    auto* be = exchange_backend(name);
    if (be == nullptr || !be->exchangeable) {
      rp.deliver(make_error(ec::invalid_token,
                            "no configured backend exchanges tokens"
                              + (name.empty() ? "" : " under '" + name + "'")));
      return rp;
    }
    if (overloaded()) {
      rp.deliver(overload_error());
      return rp;
    }
    ++pending_requests;
    auto backend_name = be->name;
    auto actor = be->actor;
    auto timeout = timeout_of(*be);
    // Step 1: which lease holds this value? Checked before the swap so a
    // rejected merge never burns the client's token.
    self->request(actor, timeout, atom::lookup_v, value)
      .then(
        [this, rp, backend_name, actor, timeout, value,
         meta](std::string& bid) mutable {
          auto* s = live(bid);
          if (s == nullptr || s->second.record.backend() != backend_name) {
            --pending_requests;
            rp.deliver(invalid_token());
            return;
          }
          auto merged = merge_meta(s->second.record.unpack(bid), meta);
          if (!merged) {
            --pending_requests;
            rp.deliver(std::move(merged.error()));
            return;
          }
          // Step 2: the atomic swap; of two racing exchanges one wins.
          self->request(actor, timeout, atom::exchange_v, bid, value)
            .then(
              [this, rp, bid, merged = std::move(*merged)](
                cloud_token& token) mutable {
                // The new value gets a fresh term of the lease's current
                // ttl, also when a renew changed it meanwhile. Only an
                // exchange changes meta, and only one exchange of a value
                // swaps, so the meta merged above is still current.
                auto swap = [this, &token, &merged](lease& x) {
                  auto now = now_ms();
                  x.value = std::move(token.value);
                  x.meta = std::move(merged);
                  x.expires_ms = std::min(now + x.ttl_ms,
                                          x.issued_ms + cfg.max_ttl_ms);
                  x.ttl_ms = x.expires_ms - now;
                };
                store_update(bid, swap, rp, ec::invalid_token);
              },
              [this, rp, backend_name](caf::error& err) mutable {
                --pending_requests;
                rp.deliver(from_cloud(backend_name, std::move(err)));
              });
        },
        [this, rp, backend_name](caf::error& err) mutable {
          --pending_requests;
          rp.deliver(from_cloud(backend_name, std::move(err)));
        });
    return rp;
  }

  static caf::error invalid_token() {
    return make_error(ec::invalid_token,
                      "the token is not a live one-time token");
  }

  /// Applies `patch` to the meta of `x` as a JSON Merge Patch (RFC 7386),
  /// within the bounds of what a lease may carry.
  static caf::expected<std::string> merge_meta(const lease& x,
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

  caf::error check_ttl(int64_t ttl) const {
    if (ttl < cfg.min_ttl_ms || ttl > cfg.max_ttl_ms)
      return make_error(ec::invalid_request,
                        "ttl must lie between " + std::to_string(cfg.min_ttl_ms)
                          + " and " + std::to_string(cfg.max_ttl_ms) + " ms");
    return caf::none;
  }

  // -- bulk revocation -------------------------------------------------------

  static bool matches(const packed_lease& x, const revoke_job& job) {
    return (job.backend.empty() || x.backend() == job.backend)
           && (job.tag.empty() || x.has_tag(job.tag));
  }

  /// Starts a job revoking every live (or irrevocable) lease that matches.
  /// Only the job is stored before the answer; its leases then go through
  /// the same paced, retried path as expiry.
  caf::typed_response_promise<revoke_job>
  revoke_matching(const std::string& backend_name, const std::string& tag) {
    auto rp = self->make_response_promise<revoke_job>();
    if (backend_name.empty() && tag.empty()) {
      rp.deliver(make_error(ec::invalid_request,
                            "revoke_prefix needs a backend or a tag"));
      return rp;
    }
    if (!backend_name.empty() && backend(backend_name) == nullptr) {
      rp.deliver(make_error(ec::unknown_backend, "no backend named '"
                                                   + backend_name
                                                   + "' is configured"));
      return rp;
    }
    revoke_job job;
    job.id = random_token(lease_id_bytes);
    job.backend = backend_name;
    job.tag = tag;
    job.created_ms = std::max(now_ms(), newest_job_ms);
    newest_job_ms = job.created_ms;
    forget_old_jobs();
    auto number = ++last_job_number;
    std::vector<lease_key> picked;
    for (auto& [key, entry] : leases) {
      bool irrevocable = entry.record.state == record_state::irrevocable;
      if (entry.job != 0 || (!is_live(entry) && !irrevocable)
          || !matches(entry.record, job))
        continue;
      entry.job = number;
      picked.push_back(key);
      if (irrevocable)
        ++job.irrevocable;
    }
    job.total = job.remaining = picked.size();
    if (job.total == 0) {
      job.state = "done";
      job.finished_ms = job.created_ms;
    }
    jobs.emplace(number, job);
    job_number.emplace(job.id, number);
    self->request(cfg.storage, caf::infinite, atom::save_v, job)
      .then(
        [this, rp, number, picked = std::move(picked)](atom::ok) mutable {
          auto& job = jobs.at(number);
          log_line("info", "revoke job '" + job.id + "' started for "
                             + std::to_string(job.total) + " leases");
          rp.deliver(job);
          // Picked leases are dead at the API already (`is_live`); they
          // go to their lanes a batch per message, so a job of a million
          // never stalls other requests.
          if (!picked.empty()) {
            to_revoke.emplace_back(number, std::move(picked));
            if (to_revoke.size() == 1)
              self->send(self, atom::job_v);
          }
        },
        [this, rp, number, picked](caf::error& err) mutable {
          for (auto& key : picked)
            if (auto i = leases.find(key);
                i != leases.end() && i->second.job == number)
              i->second.job = 0;
          job_number.erase(jobs.at(number).id);
          jobs.erase(number);
          rp.deliver(from_storage(std::move(err)));
        });
    return rp;
  }

  /// Hands the next batch of picked leases to their revocation lanes.
  void revoke_next_picked() {
    if (to_revoke.empty())
      return;
    auto& [number, keys] = to_revoke.front();
    auto n = std::min(keys.size(), due_per_tick);
    for (size_t k = keys.size() - n; k < keys.size(); ++k) {
      auto i = leases.find(keys[k]);
      if (i == leases.end() || i->second.job != number
          || i->second.progress == revocation::running)
        continue; // revoked meanwhile, or expired and on its way already
      auto& entry = i->second;
      if (entry.progress == revocation::none) {
        // Stored as revoking so `list` stops showing it.
        entry.record.state = record_state::revoking;
        save_quietly(keys[k], entry.record);
      }
      queue_revocation(*i);
    }
    keys.resize(keys.size() - n);
    if (keys.empty())
      to_revoke.pop_front();
    if (!to_revoke.empty())
      self->send(self, atom::job_v);
  }

  caf::result<revoke_job> job_status(const std::string& id) {
    auto i = job_number.find(id);
    if (i == job_number.end())
      return make_error(ec::not_found, "no revoke job has this job_id");
    return jobs.at(i->second);
  }

  /// Counts a lease of job `number` as gone; the last one ends the job.
  void job_lease_gone(uint32_t number, bool was_irrevocable) {
    auto& job = jobs.at(number);
    if (was_irrevocable && job.irrevocable > 0)
      --job.irrevocable;
    if (job.remaining > 0 && --job.remaining == 0 && loaded)
      finish_job(job);
  }

  void finish_job(revoke_job& job) {
    job.state = "done";
    job.finished_ms = now_ms();
    log_line("info", "revoke job '" + job.id + "' finished: "
                       + std::to_string(job.total) + " leases revoked");
    store_quietly(atom::save_v, job);
  }

  /// The running job a loaded lease belongs to: one whose filter it
  /// matches and that began after the lease was issued.
  uint32_t job_of_loaded(const packed_lease& record) const {
    for (auto& [number, job] : jobs)
      if (job.state != "done" && record.issued_ms <= job.created_ms
          && matches(record, job))
        return number;
    return 0;
  }

  /// Finished jobs are kept this long for `job` to report on.
  static constexpr int64_t finished_job_keep_ms = 24 * 3'600'000LL;

  bool outdated(const revoke_job& job) const {
    return job.state == "done"
           && job.finished_ms + finished_job_keep_ms < now_ms();
  }

  /// Forgets finished jobs older than a day, here and in storage.
  void forget_old_jobs() {
    for (auto i = jobs.begin(); i != jobs.end();) {
      if (!outdated(i->second)) {
        ++i;
        continue;
      }
      store_quietly(atom::remove_v, atom::job_v, i->second.id);
      job_number.erase(i->second.id);
      i = jobs.erase(i);
    }
  }

  /// Loads the stored jobs, then the leases.
  void load_jobs() {
    self->request(cfg.storage, caf::infinite, atom::load_v, atom::job_v)
      .then(
        [this](std::vector<revoke_job>& stored) {
          for (auto& job : stored) {
            if (outdated(job)) {
              store_quietly(atom::remove_v, atom::job_v, job.id);
              continue;
            }
            job.remaining = job.irrevocable = 0;
            newest_job_ms = std::max(newest_job_ms, job.created_ms);
            jobs.emplace(++last_job_number, job);
            job_number.emplace(job.id, last_job_number);
          }
          load_from("");
        },
        [this](caf::error& err) { self->quit(std::move(err)); });
  }

  // -- start-up --------------------------------------------------------------

  /// Loads every stored lease in batches: expired ones are revoked at once
  /// (their deadline is past), the rest scheduled; backends re-learn their
  /// tokens from the records.
  void load_from(std::string after) {
    self
      ->request(cfg.storage, caf::infinite, atom::load_v, std::move(after),
                cfg.load_batch)
      .then(
        [this](lease_page& page) {
          auto& batch = page.leases;
          std::map<std::string, std::vector<cloud_token>> tokens;
          for (auto& record : batch) {
            if (auto problem = unreadable(record)) {
              // Kept aside in storage, untouched: never fatal to a start.
              ++quarantined;
              log_line("error", "stored lease record '"
                                  + record.id.substr(0, 64)
                                  + "' is quarantined: " + *problem);
              continue;
            }
            if (record.state == state_pending) {
              intents[record.backend].insert(record.id);
              continue;
            }
            tokens[record.backend].push_back(
              cloud_token{record.backend_id, record.value, "{}", record.id});
            auto key = *lease_key::of(record.id);
            auto& entry = leases[key];
            entry.record = packed_lease{record};
            entry.due_ms = record.expires_ms;
            entry.job = job_of_loaded(entry.record);
            if (entry.job != 0) {
              auto& job = jobs.at(entry.job);
              ++job.remaining;
              if (record.state == state_irrevocable)
                ++job.irrevocable;
            }
            if (record.state != state_active || entry.job != 0
                || record.expires_ms <= now_ms()) {
              // Expired while we were down, revoking, irrevocable, or in a
              // revoke job: dead (not counted live), and revoked at once.
              mark_dead(entry, revocation::waiting);
              entry.due_ms = now_ms();
            }
            count_trouble(entry.record, true);
            schedule.add(entry.due_ms, key);
          }
          for (auto& [name, list] : tokens)
            if (auto* be = backend(name))
              self->send(be->actor, atom::adopt_v, std::move(list));
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

  /// Why a stored record cannot be used, if it cannot.
  static std::optional<std::string> unreadable(const lease& x) {
    if (!lease_key::of(x.id))
      return "its id is not a lease id";
    if (x.backend.empty())
      return "it names no backend";
    if (x.state != state_active && x.state != state_pending
        && x.state != state_revoking && x.state != state_irrevocable)
      return "its state '" + x.state.substr(0, 32) + "' is unknown";
    if (x.state != state_pending && x.backend_id.empty())
      return "it has no backend id";
    auto meta = nlohmann::json::parse(x.meta, nullptr, false);
    if (!meta.is_object())
      return "its meta is not a JSON object";
    return std::nullopt;
  }

  void finish_loading() {
    loaded = true;
    for (auto& [_, job] : jobs)
      if (job.state != "done" && job.remaining == 0)
        finish_job(job);
    for (auto& rp : waiting_for_ready)
      rp.deliver(live_count());
    waiting_for_ready.clear();
    process_due();
    reconcile();
  }

  // -- crash recovery --------------------------------------------------------

  /// Creations a crash interrupted: for each intent record, any token the
  /// backend made for it (found by the lease id it is marked with) is
  /// revoked, then the record is dropped. The client never got a reply.
  void reconcile() {
    for (auto& [name, ids] : intents)
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
        [this, name](caf::error&) {
          reconcile_later(std::max<int64_t>(30'000, timeout_ms_of(name)));
        });
  }

  void revoke_orphans(const std::string& name,
                      const std::set<std::string>& ids,
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
        reconcile_later(std::max<int64_t>(30'000, timeout_ms_of(name)));
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

  void drop_intents(const std::string& name,
                    const std::set<std::string>& ids) {
    auto& known = intents[name];
    for (auto& id : ids) {
      known.erase(id);
      store_quietly(atom::remove_v, id);
    }
    if (known.empty())
      intents.erase(name);
  }

  /// Runs `reconcile` in `delay_ms`, unless one runs sooner anyway.
  void reconcile_later(int64_t delay_ms) {
    auto due = now_ms() + std::max<int64_t>(1'000, delay_ms);
    if (reconcile_due && *reconcile_due <= due)
      return;
    reconcile_due = due;
    self->delayed_send(self, milliseconds(due - now_ms()), atom::reconcile_v);
  }

  int64_t timeout_ms_of(const std::string& name) const {
    auto* be = backend(name);
    if (be == nullptr || !be->remote)
      return 1'000;
    return remote_timeout(*be).count();
  }
};

} // namespace

lease_manager_actor spawn_lease_manager(caf::actor_system& sys,
                                        lease_manager_config cfg) {
  using self_ptr = lease_manager_actor::stateful_pointer<lease_manager_state>;
  auto init = [](self_ptr self, lease_manager_config cfg)
    -> lease_manager_actor::behavior_type {
    auto& st = self->state;
    st.self = self;
    st.start_wall_ms = cfg.start_wall_ms != 0 ? cfg.start_wall_ms
                                              : system_now_ms();
    st.start_clock = self->clock().now();
    for (auto& handle : cfg.backends)
      st.backends.emplace(handle.name, handle);
    // Growing past this rehashes every lease at once and stalls requests.
    st.leases.reserve(initial_capacity);
    st.cfg = std::move(cfg);
    st.load_jobs();
    return {
      [self](atom::create, create_request& req) {
        return self->state.create(req);
      },
      [self](atom::get, const std::string& id) {
        return self->state.get(id);
      },
      [self](atom::revoke, const std::string& id, bool force) {
        return self->state.revoke_by_client(id, force);
      },
      [self](atom::revoke, atom::job, const std::string& backend,
             const std::string& tag) {
        return self->state.revoke_matching(backend, tag);
      },
      [self](atom::job, const std::string& id) {
        return self->state.job_status(id);
      },
      [self](atom::renew, const std::string& id, int64_t ttl) {
        return self->state.renew(id, ttl);
      },
      [self](atom::list, list_query& query) {
        return self->state.list(query);
      },
      [self](atom::exchange, const std::string& backend,
             const std::string& value, const std::string& meta) {
        return self->state.exchange(backend, value, meta);
      },
      [self](atom::health) { return self->state.health(); },
      [self](atom::flush) {
        auto rp = self->make_response_promise<atom::ok>();
        if (self->state.revocations_in_flight == 0)
          rp.deliver(atom::ok_v);
        else
          self->state.waiting_for_drain.push_back(rp);
        return rp;
      },
      [self](atom::ready) {
        auto rp = self->make_response_promise<uint64_t>();
        if (self->state.loaded)
          rp.deliver(self->state.live_count());
        else
          self->state.waiting_for_ready.push_back(rp);
        return rp;
      },
      [self](atom::tick, int64_t due) { self->state.on_tick(due); },
      [self](atom::job) { self->state.revoke_next_picked(); },
      [self](atom::reconcile) {
        auto& st = self->state;
        if (st.reconcile_due && *st.reconcile_due <= st.now_ms())
          st.reconcile_due.reset();
        st.reconcile();
      },
    };
  };
  return sys.spawn(init, std::move(cfg));
}

} // namespace tlm
