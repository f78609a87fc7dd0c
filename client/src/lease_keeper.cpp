#include "tlm/lease_keeper.hpp"

#include "tlm/lease_cache.hpp"

namespace tlm::inline client_api {

std::string_view to_string(keeper_event_kind k) {
  switch (k) {
    case keeper_event_kind::obtained: return "obtained";
    case keeper_event_kind::adopted: return "adopted";
    case keeper_event_kind::renewed: return "renewed";
    case keeper_event_kind::exchanged: return "exchanged";
    case keeper_event_kind::replaced: return "replaced";
    case keeper_event_kind::failed: return "failed";
    case keeper_event_kind::lost: return "lost";
    default: return "revoked";
  }
}

namespace {

keeper_event event(keeper_event_kind kind, std::optional<lease> x,
                   std::optional<failure> err, std::string message) {
  keeper_event ev;
  ev.kind = kind;
  ev.lease = std::move(x);
  ev.error = std::move(err);
  ev.message = std::move(message);
  return ev;
}

std::shared_ptr<keeper_clock> clock_or_system(keeper_options& opts) {
  if (!opts.clock)
    opts.clock = system_keeper_clock();
  return opts.clock;
}

} // namespace

lease_keeper::lease_keeper(client& c, keeper_options opts)
  : client_(c),
    opts_(std::move(opts)),
    clock_(clock_or_system(opts_)),
    policy_(opts_.timing, opts_.recreate, *clock_) {
  // A keeper exists to renew: ask for a renewable lease unless told not to.
  if (!opts_.create.renewable)
    opts_.create.renewable = true;
  if (!opts_.cache_file.empty())
    cache_ = std::make_unique<lease_cache>(opts_.cache_file);
}

lease_keeper::~lease_keeper() {
  if (thread_.joinable()) {
    opts_.revoke_on_stop = false; // a destructor never talks to the server
    stop();
  }
}

result<done> lease_keeper::start() {
  if (auto err = check_timing(opts_.timing); !err.empty())
    return failure{errc::invalid_request, "lease keeper: " + err};
  if (thread_.joinable())
    return failure{errc::invalid_request, "lease keeper: already started"};
  if (opts_.existing) {
    if (opts_.existing->value.empty() || opts_.existing->id.empty())
      return failure{errc::invalid_request,
                     "lease keeper: the existing lease needs its id and value"};
    set_current(opts_.existing);
    policy_.on_lease(*opts_.existing);
  } else {
    policy_.start_empty();
  }
  thread_ = std::thread([this] { run(); });
  return done{};
}

std::optional<lease> lease_keeper::current() const {
  std::lock_guard guard{mtx_};
  if (current_ && current_->expires > clock_->now())
    return current_;
  return std::nullopt;
}

result<lease> lease_keeper::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock guard{mtx_};
  bool ready = cv_.wait_for(guard, timeout, [this] {
    return (current_ && current_->expires > clock_->now()) || gave_up_;
  });
  if (ready && current_ && current_->expires > clock_->now())
    return *current_;
  if (gave_up_)
    return *gave_up_;
  std::string why = last_error_ ? "; last error: " + last_error_->message : "";
  return failure{errc::timeout, "no lease within "
                                  + std::to_string(timeout.count()) + " ms"
                                  + why};
}

result<revoke_outcome> lease_keeper::stop() {
  {
    std::lock_guard guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
  if (!opts_.revoke_on_stop)
    return revoke_outcome{};
  return revoke_current();
}

// -- the background thread ----------------------------------------------------

void lease_keeper::run() {
  std::unique_lock guard{mtx_};
  while (!stopping_) {
    auto action = policy_.next_action();
    if (action == keeper_action::idle) {
      wait_out_current(guard);
      return;
    }
    if (cv_.wait_until(guard, policy_.next_time(),
                       [this] { return stopping_; }))
      return;
    guard.unlock();
    step(action);
    guard.lock();
  }
}

/// Nothing more can be done: serve the lease until it expires, then say
/// it is lost and wait for stop().
void lease_keeper::wait_out_current(std::unique_lock<std::mutex>& guard) {
  auto until = current_ ? current_->expires : clock_->now();
  if (cv_.wait_until(guard, until, [this] { return stopping_; }))
    return;
  gave_up_ = failure{last_error_ ? last_error_->code : errc::not_renewable,
                     policy_.lost()};
  current_.reset();
  guard.unlock();
  cv_.notify_all();
  emit(event(keeper_event_kind::lost, std::nullopt, gave_up_, policy_.lost()));
  guard.lock();
  cv_.wait(guard, [this] { return stopping_; });
}

void lease_keeper::step(keeper_action action) {
  if (cache_) {
    if (auto locked = cache_->lock(); !locked) {
      on_failure(locked.error());
      return;
    }
    if (adopt_from_cache()) {
      cache_->unlock();
      return;
    }
  }
  bool capped = false;
  auto r = call(action, capped);
  if (r)
    on_success(action, std::move(r.value()), capped);
  else
    on_failure(r.error());
  if (cache_)
    cache_->unlock();
}

/// Takes a newer lease a sibling (or our previous run) left in the cache
/// instead of calling the server. Runs with the cache locked.
bool lease_keeper::adopt_from_cache() {
  auto cached = cache_->load();
  if (!cached) {
    emit(event(keeper_event_kind::failed, current(), cached.error(),
               cached.error().message + " (it will be overwritten)"));
    return false;
  }
  if (!cached.value())
    return false;
  auto& c = *cached.value();
  std::optional<lease> mine;
  {
    std::lock_guard guard{mtx_};
    mine = current_;
  }
  bool usable = c.expires > clock_->now() && c.id != dead_id_
                && (opts_.create.backend.empty()
                    || c.backend == opts_.create.backend);
  bool newer = !mine || mine->id != c.id || c.expires > mine->expires
               || c.value != mine->value;
  if (!usable || !newer)
    return false;
  set_current(c);
  policy_.on_lease(c);
  emit(event(keeper_event_kind::adopted, c, std::nullopt,
             "took the lease from the cache " + cache_->path()));
  return true;
}

result<lease> lease_keeper::call(keeper_action action, bool& capped) {
  std::optional<lease> held;
  {
    // Also an expired one: the server then says not_found, and we create.
    std::lock_guard guard{mtx_};
    held = current_;
  }
  if (action == keeper_action::create || !held)
    return client_.create_lease(opts_.create);
  if (action == keeper_action::renew) {
    auto r = client_.renew_lease(held->id);
    if (!r)
      return r.error();
    capped = r->capped;
    return std::move(r->lease);
  }
  auto r = client_.exchange_token(held->value);
  // The exchange says nothing of the cap; a term cut to under half the
  // ttl means the cap is near, so the next refresh creates a new lease.
  if (r)
    capped = r->expires - clock_->now()
             < std::chrono::milliseconds{r->ttl_ms / 2};
  return r;
}

void lease_keeper::on_success(keeper_action action, lease x, bool capped) {
  bool had_one = false; // also one that expired meanwhile
  {
    std::lock_guard guard{mtx_};
    had_one = current_.has_value();
  }
  keeper_event_kind kind = keeper_event_kind::obtained;
  if (action == keeper_action::renew)
    kind = keeper_event_kind::renewed;
  else if (action == keeper_action::exchange)
    kind = keeper_event_kind::exchanged;
  else if (had_one)
    kind = keeper_event_kind::replaced;
  set_current(x);
  policy_.on_lease(x, capped);
  emit(
    event(kind, x, std::nullopt, capped ? "capped by the total-life cap" : ""));
  if (cache_)
    if (auto stored = cache_->store(x); !stored)
      emit(event(keeper_event_kind::failed, x, stored.error(),
                 stored.error().message));
}

void lease_keeper::on_failure(const failure& err) {
  bool gone = err.code == errc::not_found || err.code == errc::invalid_token
              || err.code == errc::not_renewable;
  if (gone) {
    // Never take this one from the cache again.
    std::lock_guard guard{mtx_};
    if (current_)
      dead_id_ = current_->id;
  }
  policy_.on_failure(err);
  {
    std::lock_guard guard{mtx_};
    last_error_ = err;
  }
  auto ev = event(keeper_event_kind::failed, current(), err, err.message);
  ev.attempt = policy_.failed_attempts();
  ev.retry_at = policy_.next_time();
  emit(std::move(ev));
}

void lease_keeper::forget_cached(const std::string& lease_id) {
  auto forgotten = cache_->lock();
  if (forgotten)
    forgotten = cache_->forget(lease_id);
  cache_->unlock();
  if (!forgotten)
    emit(event(keeper_event_kind::failed, std::nullopt, forgotten.error(),
               forgotten.error().message));
}

void lease_keeper::set_current(std::optional<lease> x) {
  {
    std::lock_guard guard{mtx_};
    current_ = std::move(x);
  }
  cv_.notify_all();
}

void lease_keeper::emit(keeper_event ev) {
  ev.at = clock_->now();
  if (opts_.watcher)
    opts_.watcher(ev);
}

result<revoke_outcome> lease_keeper::revoke_current() {
  auto mine = current();
  if (!mine)
    return revoke_outcome{};
  auto r = client_.revoke_lease(mine->id);
  if (!r && r.error().code != errc::not_found)
    return r.error();
  if (cache_)
    forget_cached(mine->id);
  auto outcome = r ? r.value() : revoke_outcome{};
  set_current(std::nullopt);
  emit(event(keeper_event_kind::revoked, std::nullopt, std::nullopt,
             outcome.confirmed ? "revoked" : outcome.message));
  return outcome;
}

} // namespace tlm::inline client_api
