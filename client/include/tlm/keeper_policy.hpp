#pragma once

// The lease keeper's decisions, with no I/O and no clock of its own: what
// to do next and when, given what happened. Tests drive it on a fake clock.

#include <optional>
#include <string>

#include "tlm/keeper_clock.hpp"
#include "tlm/lease.hpp"
#include "tlm/renewal_math.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api {

/// What the keeper does at `keeper_policy::next_time()`.
enum class keeper_action {
  create,   ///< get a new lease
  renew,    ///< extend the current one
  exchange, ///< swap a local one-time token for a fresh one
  idle,     ///< nothing more can be done (see `keeper_policy::lost()`)
};

std::string_view to_string(keeper_action a);

class keeper_policy {
public:
  keeper_policy(renewal_timing timing, bool recreate, keeper_clock& clock);

  /// No lease yet: create one now.
  void start_empty();

  /// `x` is current from now on (created, renewed, exchanged or read from
  /// the cache). `capped`: its term cannot be extended any more, so its
  /// refresh creates a new lease (if allowed) instead of renewing.
  void on_lease(const lease& x, bool capped = false);

  /// The last action failed: retry with backoff when the failure may heal,
  /// replace the lease when it cannot be renewed (if allowed), otherwise
  /// stop (`lost()` says why).
  void on_failure(const failure& err);

  keeper_action next_action() const {
    return action_;
  }
  wall_time next_time() const {
    return next_;
  }
  /// Failed tries since the last success.
  int failed_attempts() const {
    return attempts_;
  }
  /// Why the keeper stopped trying, once `next_action()` is idle.
  const std::string& lost() const {
    return lost_;
  }

private:
  keeper_action refresh_action(const lease& x, bool capped) const;

  renewal_timing timing_;
  bool recreate_;
  keeper_clock& clock_;
  keeper_action action_ = keeper_action::create;
  wall_time next_;
  int attempts_ = 0;
  std::string lost_;
};

} // namespace tlm::inline client_api
