#pragma once

// A batch of client calls: what a front end read from a connection in one
// go reaches the lease manager as one message, and the outcomes go back
// as one. Inside the manager each call answers through a `reply`, which
// is either a CAF response promise (a single request) or a slot of its
// batch, so one code path serves both.

#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/type_ids.hpp"
#include "core/error.hpp"
#include "core/lease.hpp"

namespace tlm {

// -- the calls ----------------------------------------------------------------

struct get_call {
  std::string id;
};

struct renew_call {
  std::string id;
  int64_t ttl_ms = use_default_ttl;
};

struct health_call {};

struct job_call {
  std::string id;
};

/// Starts a bulk revocation of the live leases matching (backend, tag).
struct revoke_matching_call {
  std::string backend;
  std::string tag;
};

using manager_call =
  std::variant<create_request, get_call, revoke_request, renew_call, list_query,
               exchange_request, health_call, job_call, revoke_matching_call>;

// -- the outcomes -------------------------------------------------------------

/// A renewed lease, and whether the total-life cap cut its term short.
struct renewed {
  lease x;
  bool capped = false;
};

using manager_outcome = std::variant<caf::error, lease, renewed, lease_page,
                                     health_report, job_status, atom::ok>;

using batch_done = std::function<void(std::vector<manager_outcome>)>;

/// The message: the calls in the order of their effect, and who gets the
/// outcomes (called once, on the manager's thread, with one outcome a
/// call).
struct call_batch {
  std::vector<manager_call> calls;
  batch_done done;
};

/// The outcomes of one batch as they arrive, on the manager's thread.
class batch_answers {
public:
  batch_answers(size_t n, batch_done done)
    : outcomes_(n), answered_(n, false), missing_(n), done_(std::move(done)) {
    if (n == 0)
      finish();
  }

  /// A call's reply dropped unanswered would leave its client waiting
  /// forever: it answers with an internal error instead.
  ~batch_answers() {
    for (size_t i = 0; i < answered_.size() && done_; ++i)
      put(i, make_error(ec::internal, "the lease manager lost this call"));
  }

  void put(size_t index, manager_outcome outcome) {
    if (answered_[index])
      return;
    answered_[index] = true;
    outcomes_[index] = std::move(outcome);
    if (--missing_ == 0)
      finish();
  }

  bool answered(size_t index) const {
    return answered_[index];
  }

private:
  void finish() {
    auto done = std::move(done_);
    done_ = nullptr;
    if (done)
      done(std::move(outcomes_));
  }

  std::vector<manager_outcome> outcomes_;
  std::vector<bool> answered_;
  size_t missing_;
  batch_done done_;
};

// -- the reply ----------------------------------------------------------------

/// Makes the outcome of a call from what its action delivers.
inline manager_outcome outcome_of(lease x) {
  return x;
}
inline manager_outcome outcome_of(lease x, bool capped) {
  return renewed{std::move(x), capped};
}
inline manager_outcome outcome_of(lease_page x) {
  return x;
}
inline manager_outcome outcome_of(health_report x) {
  return x;
}
inline manager_outcome outcome_of(job_status x) {
  return x;
}
inline manager_outcome outcome_of(atom::ok x) {
  return x;
}

/// Where one action's outcome goes. Copies share the destination; only the
/// first delivery counts.
template <class... Ts>
class reply {
public:
  reply(caf::typed_response_promise<Ts...> rp) : promise_(std::move(rp)) {
    // nop
  }

  reply(std::shared_ptr<batch_answers> batch, size_t index)
    : batch_(std::move(batch)), index_(index) {
    // nop
  }

  void deliver(Ts... xs) {
    if (batch_)
      batch_->put(index_, outcome_of(std::move(xs)...));
    else
      promise_.deliver(std::move(xs)...);
  }

  void deliver(caf::error err) {
    if (batch_)
      batch_->put(index_, std::move(err));
    else
      promise_.deliver(std::move(err));
  }

  bool pending() const {
    return batch_ ? !batch_->answered(index_) : promise_.pending();
  }

private:
  caf::typed_response_promise<Ts...> promise_;
  std::shared_ptr<batch_answers> batch_;
  size_t index_ = 0;
};

} // namespace tlm

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tlm::call_batch)
