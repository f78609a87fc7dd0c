#include "api/dispatcher.hpp"

#include <future>

#include <caf/all.hpp>

namespace tlm {

dispatcher::dispatcher(gateway& gw, lease_manager_actor manager,
                       const api_keys& keys, std::chrono::milliseconds timeout)
  : gateway_(gw), manager_(std::move(manager)), keys_(keys), timeout_(timeout) {
  // nop
}

api_reply dispatcher::failure(const std::optional<nlohmann::json>& request_id,
                              const caf::error& err) {
  auto mapped = err;
  if (err == caf::sec::request_timeout)
    mapped = make_error(ec::overloaded,
                        "the lease manager did not answer in time");
  return {render_failure(request_id, mapped), code_of(mapped)};
}

template <class... Results, class Render, class... Ts>
void dispatcher::ask(reply_ptr to, size_t lane, Render render, Ts... xs) {
  ++in_flight_;
  // Both outcomes share one target: a copy of the callback per handler
  // allocates when it outgrows std::function's small buffer (TCP's does).
  gateway_.submit(
    gateway_job{[this, to = std::move(to), render,
                 ... xs = std::move(xs)](caf::event_based_actor* self) mutable {
      // No request timeout: the manager always answers (its own calls to
      // remote backends have deadlines), and a timeout would cost two trips
      // through CAF's clock thread per request.
      self->request(manager_, caf::infinite, std::move(xs)...)
        .then(
          [this, to, render](Results&... results) {
            --in_flight_;
            to->done({render(to->request_id, results...), ec::none});
          },
          [this, to](caf::error& err) {
            --in_flight_;
            to->done(failure(to->request_id, err));
          });
    }},
    lane);
}

size_t dispatcher::next_lane() {
  static std::atomic<size_t> lanes{0};
  return lanes.fetch_add(1, std::memory_order_relaxed);
}

void dispatcher::call(api_request req, std::function<void(api_reply)> done,
                      size_t lane) {
  if (req.error) {
    done(failure(req.request_id, req.error));
    return;
  }
  auto to = std::make_shared<reply_to>(
    reply_to{std::move(req.request_id), std::move(done)});
  std::visit([&](auto& cmd) { run(cmd, std::move(to), lane); }, req.cmd);
}

// -- one function per action --------------------------------------------------

namespace {

using json = nlohmann::json;
using request_id = std::optional<json>;

std::string lease_reply(const request_id& id, const lease& x) {
  return render_lease(id, x);
}

std::string empty_success(const request_id& id, atom::ok) {
  return render_success(id, json::object());
}

} // namespace

void dispatcher::run(create_cmd& cmd, reply_ptr to, size_t lane) {
  ask<lease>(std::move(to), lane, lease_reply, atom::create_v,
             std::move(cmd.create));
}

void dispatcher::run(get_cmd& cmd, reply_ptr to, size_t lane) {
  ask<lease>(std::move(to), lane, lease_reply, atom::get_v,
             std::move(cmd.lease_id));
}

void dispatcher::run(revoke_cmd& cmd, reply_ptr to, size_t lane) {
  ask<atom::ok>(std::move(to), lane, empty_success, atom::revoke_v,
                revoke_request{std::move(cmd.lease_id), cmd.force});
}

void dispatcher::run(renew_cmd& cmd, reply_ptr to, size_t lane) {
  ask<lease, bool>(
    std::move(to), lane,
    [](const request_id& id, const lease& x, bool capped) {
      return render_lease(id, x, capped);
    },
    atom::renew_v, std::move(cmd.lease_id), cmd.ttl_ms);
}

void dispatcher::run(list_cmd& cmd, reply_ptr to, size_t lane) {
  ask<lease_page>(
    std::move(to), lane,
    [](const request_id& id, const lease_page& page) {
      return render_page(id, page);
    },
    atom::list_v, std::move(cmd.query));
}

void dispatcher::run(exchange_cmd& cmd, reply_ptr to, size_t lane) {
  ask<lease>(std::move(to), lane, lease_reply, atom::exchange_v,
             exchange_request{std::move(cmd.backend), std::move(cmd.token),
                              std::move(cmd.meta)});
}

void dispatcher::run(health_cmd&, reply_ptr to, size_t lane) {
  ask<health_report>(
    std::move(to), lane,
    [](const request_id& id, const health_report& h) {
      return render_success(id, to_json(h));
    },
    atom::health_v);
}

void dispatcher::run(auth_cmd& cmd, reply_ptr to, size_t) {
  if (!keys_.allows(cmd.api_key)) {
    auto err = make_error(ec::unauthorized, "the API key is not valid");
    to->done(failure(to->request_id, err));
    return;
  }
  to->done({render_success(to->request_id, json::object()), ec::none});
}

void dispatcher::run(revoke_prefix_cmd& cmd, reply_ptr to, size_t lane) {
  ask<job_status>(
    std::move(to), lane,
    [](const request_id& id, const job_status& status) {
      return render_success(id, {{"job_id", status.job.id},
                                 {"count", status.job.total},
                                 {"job", to_json(status)}});
    },
    atom::revoke_v, atom::job_v, std::move(cmd.backend), std::move(cmd.tag));
}

void dispatcher::run(job_cmd& cmd, reply_ptr to, size_t lane) {
  ask<job_status>(
    std::move(to), lane,
    [](const request_id& id, const job_status& status) {
      return render_success(id, {{"job", to_json(status)}});
    },
    atom::job_v, std::move(cmd.job_id));
}

api_reply dispatcher::call_and_wait(api_request req, size_t lane) {
  auto promise = std::make_shared<std::promise<api_reply>>();
  auto future = promise->get_future();
  call(
    std::move(req),
    [promise](api_reply reply) { promise->set_value(std::move(reply)); }, lane);
  // The manager always answers; the deadline only guards a thread of ours
  // against a stopped actor system.
  if (future.wait_for(timeout_) != std::future_status::ready)
    return failure(std::nullopt,
                   make_error(ec::internal, "the lease manager is gone"));
  return future.get();
}

} // namespace tlm
