#pragma once

// Keeps one lease alive in a background thread (the aliri_tokens idea).

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "tlm/client.hpp"
#include "tlm/keeper_clock.hpp"
#include "tlm/keeper_policy.hpp"
#include "tlm/lease.hpp"
#include "tlm/renewal_math.hpp"

namespace tlm::inline client_api {

class lease_cache;

/// What a watcher hears about.
enum class keeper_event_kind {
  obtained,  ///< a new lease (created, or the first one given)
  adopted,   ///< taken from the cache file (a sibling's or our last one)
  renewed,   ///< same lease and value, later `expires`
  exchanged, ///< same lease, a new value (local one-time tokens)
  replaced,  ///< the old lease could not be renewed: a new one
  failed,    ///< a try failed; `attempt` and `retry_at` say what comes next
  lost,      ///< no valid lease and no more tries (see `message`)
  revoked,   ///< stop() revoked the lease
};

std::string_view to_string(keeper_event_kind k);

struct keeper_event {
  keeper_event_kind kind = keeper_event_kind::obtained;
  /// The current lease after the event, if one is still valid.
  std::optional<tlm::lease> lease;
  /// For `failed` and `lost`: what went wrong.
  std::optional<failure> error;
  std::string message;
  int attempt = 0;
  wall_time retry_at;
  wall_time at;
};

struct keeper_options {
  /// The lease to create (its `renewable` defaults to true here).
  create_request create;
  /// Start from this lease (with its value) instead of creating one.
  std::optional<tlm::lease> existing;
  renewal_timing timing;
  /// Create a new lease when the current one cannot be renewed any more
  /// (`not_renewable`, `not_found`, `invalid_token`, the total-life cap).
  bool recreate = true;
  /// stop() revokes the current lease (and forgets the cache file).
  bool revoke_on_stop = false;
  /// The file cache; empty: none.
  std::string cache_file;
  /// Called on the keeper's thread for every event; must not block long.
  std::function<void(const keeper_event&)> watcher;
  /// Injected in tests; the system clock otherwise.
  std::shared_ptr<keeper_clock> clock;
};

class lease_keeper {
public:
  lease_keeper(client& c, keeper_options opts);
  ~lease_keeper();
  lease_keeper(const lease_keeper&) = delete;
  lease_keeper& operator=(const lease_keeper&) = delete;

  /// Starts the background thread; returns at once. Fails only for bad
  /// options (their message names the option).
  result<done> start();

  /// The current lease while it is valid (`expires` is ahead), also while
  /// the server cannot be reached; never waits for the network.
  std::optional<tlm::lease> current() const;

  /// Waits until there is a current lease or the keeper gave up.
  result<tlm::lease> wait_ready(std::chrono::milliseconds timeout);

  /// Stops the thread (after the call in flight, if any: at most the
  /// client's request timeout) and, when configured, revokes the lease;
  /// the outcome says whether the backend confirmed it. Without a lease
  /// to revoke the outcome is `confirmed`.
  result<revoke_outcome> stop();

private:
  void run();
  void wait_out_current(std::unique_lock<std::mutex>& guard);
  void step(keeper_action action);
  bool adopt_from_cache();
  result<lease> call(keeper_action action, bool& capped);
  void on_success(keeper_action action, lease x, bool capped);
  void on_failure(const failure& err);
  void set_current(std::optional<lease> x);
  void emit(keeper_event ev);
  result<revoke_outcome> revoke_current();
  void forget_cached(const std::string& lease_id);

  client& client_;
  keeper_options opts_;
  std::shared_ptr<keeper_clock> clock_;
  std::unique_ptr<lease_cache> cache_;
  keeper_policy policy_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::optional<tlm::lease> current_;
  std::optional<failure> gave_up_;
  std::optional<failure> last_error_;
  /// The lease the server said is gone or not renewable.
  std::string dead_id_;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace tlm::inline client_api
