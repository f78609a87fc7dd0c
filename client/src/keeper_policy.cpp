#include "tlm/keeper_policy.hpp"

namespace tlm::inline client_api {

std::string_view to_string(keeper_action a) {
  switch (a) {
    case keeper_action::create: return "create";
    case keeper_action::renew: return "renew";
    case keeper_action::exchange: return "exchange";
    default: return "idle";
  }
}

keeper_policy::keeper_policy(renewal_timing timing, bool recreate,
                             keeper_clock& clock)
  : timing_(timing), recreate_(recreate), clock_(clock) {
}

void keeper_policy::start_empty() {
  action_ = keeper_action::create;
  next_ = clock_.now();
  attempts_ = 0;
  lost_.clear();
}

keeper_action keeper_policy::refresh_action(const lease& x, bool capped) const {
  if (capped || (!x.renewable && x.backend != "local"))
    return recreate_ ? keeper_action::create : keeper_action::idle;
  return x.backend == "local" ? keeper_action::exchange : keeper_action::renew;
}

void keeper_policy::on_lease(const lease& x, bool capped) {
  attempts_ = 0;
  lost_.clear();
  auto now = clock_.now();
  action_ = refresh_action(x, capped);
  if (action_ == keeper_action::idle) {
    // Nothing can extend it: it serves until it expires.
    next_ = x.expires;
    lost_ = capped ? "the lease reached its total-life cap"
                   : "the lease is not renewable";
    lost_ += " and recreating is off; it ends at its expiry";
    return;
  }
  next_ = refresh_time(timing_, now, x.expires, clock_.uniform());
}

void keeper_policy::on_failure(const failure& err) {
  auto now = clock_.now();
  bool gone = err.code == errc::not_renewable || err.code == errc::not_found
              || err.code == errc::invalid_token;
  if (gone && action_ != keeper_action::create) {
    if (recreate_) {
      action_ = keeper_action::create;
      attempts_ = 0;
      next_ = now;
      return;
    }
    action_ = keeper_action::idle;
    lost_ = "the lease can no longer be renewed and recreating is off: "
            + err.message;
    return;
  }
  if (is_transient(err.code)) {
    ++attempts_;
    next_ = now + backoff_delay(timing_, attempts_, clock_.uniform());
    return;
  }
  action_ = keeper_action::idle;
  lost_ = "giving up after " + std::string{to_string(err.code)} + ": "
          + err.message;
}

} // namespace tlm::inline client_api
