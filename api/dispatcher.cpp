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
void dispatcher::ask(api_request req, std::function<void(api_reply)> done,
                     size_t lane, Render render, Ts... xs) {
  ++in_flight_;
  auto finish = [this, done = std::move(done)](api_reply reply) {
    --in_flight_;
    done(std::move(reply));
  };
  gateway_.submit(gateway_job{[this, req = std::move(req), finish, render,
                               xs...](caf::event_based_actor* self) {
    // No request timeout: the manager always answers (its own calls to
    // remote backends have deadlines), and a timeout would cost two trips
    // through CAF's clock thread per request.
    self->request(manager_, caf::infinite, xs...)
      .then(
        [req, finish, render](Results&... results) {
          finish({render(req, results...), ec::none});
        },
        [req, finish](caf::error& err) {
          finish(failure(req.request_id, err));
        });
  }}, lane);
}

size_t dispatcher::next_lane() {
  static std::atomic<size_t> lanes{0};
  return lanes.fetch_add(1, std::memory_order_relaxed);
}

void dispatcher::call(api_request req, std::function<void(api_reply)> done,
                      size_t lane) {
  using json = nlohmann::json;
  if (req.error) {
    done(failure(req.request_id, req.error));
    return;
  }
  auto with_lease = [](const api_request& r, const lease& x) {
    return render_lease(r, x);
  };
  switch (req.verb) {
    case action::create: {
      auto create = req.create;
      return ask<lease>(std::move(req), std::move(done), lane, with_lease, atom::create_v,
                 std::move(create));
    }
    case action::get: {
      auto id = req.lease_id;
      return ask<lease>(std::move(req), std::move(done), lane, with_lease, atom::get_v, id);
    }
    case action::revoke: {
      auto id = req.lease_id;
      auto force = req.force;
      return ask<atom::ok>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, atom::ok) {
          return render_success(r, json::object());
        },
        atom::revoke_v, id, force);
    }
    case action::renew: {
      auto id = req.lease_id;
      auto ttl = req.ttl_ms;
      return ask<lease, bool>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, const lease& x, bool capped) {
          return render_lease(r, x, capped);
        },
        atom::renew_v, id, ttl);
    }
    case action::list: {
      auto query = req.query;
      return ask<lease_page>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, const lease_page& page) {
          return render_page(r, page);
        },
        atom::list_v, query);
    }
    case action::exchange: {
      auto backend = req.backend;
      auto token = req.token;
      auto meta = req.meta;
      return ask<lease>(std::move(req), std::move(done), lane, with_lease,
                        atom::exchange_v, backend, token, meta);
    }
    case action::health:
      return ask<health_report>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, const health_report& h) {
          return render_success(r, to_json(h));
        },
        atom::health_v);
    case action::revoke_prefix: {
      auto backend = req.backend;
      auto tag = req.tag;
      return ask<revoke_job>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, const revoke_job& job) {
          return render_success(r, {{"job_id", job.id},
                                    {"count", job.total},
                                    {"job", to_json(job)}});
        },
        atom::revoke_v, atom::job_v, backend, tag);
    }
    case action::job: {
      auto id = req.job_id;
      return ask<revoke_job>(
        std::move(req), std::move(done), lane,
        [](const api_request& r, const revoke_job& job) {
          return render_success(r, {{"job", to_json(job)}});
        },
        atom::job_v, id);
    }
    case action::auth:
      if (keys_.allows(req.api_key))
        done({render_success(req, json::object()), ec::none});
      else
        done(failure(req.request_id,
                     make_error(ec::unauthorized, "the API key is not valid")));
      return;
  }
}

api_reply dispatcher::call_and_wait(api_request req, size_t lane) {
  auto promise = std::make_shared<std::promise<api_reply>>();
  auto future = promise->get_future();
  call(std::move(req),
       [promise](api_reply reply) { promise->set_value(std::move(reply)); },
       lane);
  // The manager always answers; the deadline only guards a thread of ours
  // against a stopped actor system.
  if (future.wait_for(timeout_)
      != std::future_status::ready)
    return failure(std::nullopt, make_error(ec::internal,
                                            "the lease manager is gone"));
  return future.get();
}

} // namespace tlm
