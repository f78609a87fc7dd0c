#include "api/dispatcher.hpp"

#include <future>

#include <caf/all.hpp>

namespace tlm {

namespace {

using json = nlohmann::json;

/// How a request's outcome becomes its reply.
enum class render_as : uint8_t {
  lease,       ///< create, get, exchange
  renewed,     ///< renew
  empty,       ///< revoke
  page,        ///< list
  health,      ///< health
  job_started, ///< revoke_prefix
  job,         ///< job
};

/// The manager call of a command, and how to render its outcome.
struct to_call {
  using result = std::pair<manager_call, render_as>;

  result operator()(create_cmd& c) const {
    return {std::move(c.create), render_as::lease};
  }
  result operator()(get_cmd& c) const {
    return {get_call{std::move(c.lease_id)}, render_as::lease};
  }
  result operator()(revoke_cmd& c) const {
    return {revoke_request{std::move(c.lease_id), c.force}, render_as::empty};
  }
  result operator()(renew_cmd& c) const {
    return {renew_call{std::move(c.lease_id), c.ttl_ms}, render_as::renewed};
  }
  result operator()(list_cmd& c) const {
    return {std::move(c.query), render_as::page};
  }
  result operator()(exchange_cmd& c) const {
    return {exchange_request{std::move(c.backend), std::move(c.token),
                             std::move(c.meta)},
            render_as::lease};
  }
  result operator()(health_cmd&) const {
    return {health_call{}, render_as::health};
  }
  result operator()(revoke_prefix_cmd& c) const {
    return {revoke_matching_call{std::move(c.backend), std::move(c.tag)},
            render_as::job_started};
  }
  result operator()(job_cmd& c) const {
    return {job_call{std::move(c.job_id)}, render_as::job};
  }
  result operator()(auth_cmd&) const {
    // Answered by the dispatcher itself; never sent.
    return {health_call{}, render_as::empty};
  }
};

/// The reply text of a successful outcome.
struct render_success_of {
  const std::optional<json>& id;
  render_as as;

  std::string operator()(const lease& x) const {
    return render_lease(id, x);
  }
  std::string operator()(const renewed& r) const {
    return render_lease(id, r.x, r.capped);
  }
  std::string operator()(const lease_page& page) const {
    return render_page(id, page);
  }
  std::string operator()(const health_report& h) const {
    return render_success(id, to_json(h));
  }
  std::string operator()(const job_status& status) const {
    if (as == render_as::job_started)
      return render_success(id, {{"job_id", status.job.id},
                                 {"count", status.job.total},
                                 {"job", to_json(status)}});
    return render_success(id, {{"job", to_json(status)}});
  }
  std::string operator()(const atom::ok&) const {
    return render_success(id, json::object());
  }
  std::string operator()(const caf::error&) const {
    return {}; // handled by the caller
  }
};

} // namespace

struct batch_outcome::request_info {
  std::optional<json> request_id;
  render_as as = render_as::empty;
  /// Answered without the manager, e.g. a parse error.
  std::optional<api_reply> answered;
};

batch_outcome::batch_outcome(
  std::shared_ptr<std::vector<request_info>> requests,
  std::vector<manager_outcome> outcomes)
  : requests_(std::move(requests)), outcomes_(std::move(outcomes)) {
  // nop
}

std::vector<api_reply> batch_outcome::render() && {
  std::vector<api_reply> replies;
  replies.reserve(requests_->size());
  size_t next = 0;
  for (auto& info : *requests_) {
    if (info.answered) {
      replies.push_back(std::move(*info.answered));
      continue;
    }
    auto& outcome = outcomes_[next++];
    if (auto* err = std::get_if<caf::error>(&outcome))
      replies.push_back(dispatcher::failure(info.request_id, *err));
    else
      replies.push_back(
        {std::visit(render_success_of{info.request_id, info.as}, outcome),
         ec::none});
  }
  return replies;
}

dispatcher::dispatcher(lease_manager_actor manager, const api_keys& keys,
                       std::chrono::milliseconds timeout)
  : manager_(std::move(manager)), keys_(keys), timeout_(timeout) {
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

void dispatcher::send(std::vector<api_request> reqs,
                      std::function<void(batch_outcome)> done) {
  auto infos = std::make_shared<std::vector<batch_outcome::request_info>>();
  infos->reserve(reqs.size());
  call_batch batch;
  batch.calls.reserve(reqs.size());
  for (auto& req : reqs) {
    auto& info = infos->emplace_back();
    info.request_id = std::move(req.request_id);
    if (req.error) {
      info.answered = failure(info.request_id, req.error);
    } else if (auto* auth = std::get_if<auth_cmd>(&req.cmd)) {
      info.answered =
        keys_.allows(auth->api_key)
          ? api_reply{render_success(info.request_id, json::object())}
          : failure(info.request_id,
                    make_error(ec::unauthorized, "the API key is not valid"));
    } else {
      auto [call, as] = std::visit(to_call{}, req.cmd);
      info.as = as;
      batch.calls.push_back(std::move(call));
    }
  }
  if (batch.calls.empty()) {
    done(batch_outcome{std::move(infos), {}});
    return;
  }
  auto n = batch.calls.size();
  in_flight_ += n;
  batch.done = [this, n, infos,
                done = std::move(done)](std::vector<manager_outcome> outcomes) {
    in_flight_ -= n;
    done(batch_outcome{infos, std::move(outcomes)});
  };
  caf::anon_send(manager_, atom::batch_v, std::move(batch));
}

void dispatcher::call(api_request req, std::function<void(api_reply)> done) {
  std::vector<api_request> one;
  one.push_back(std::move(req));
  send(std::move(one), [done = std::move(done)](batch_outcome outcome) {
    done(std::move(std::move(outcome).render().front()));
  });
}

api_reply dispatcher::call_and_wait(api_request req) {
  auto promise = std::make_shared<std::promise<api_reply>>();
  auto future = promise->get_future();
  call(std::move(req),
       [promise](api_reply reply) { promise->set_value(std::move(reply)); });
  // The manager always answers; the deadline only guards a thread of ours
  // against a stopped actor system.
  if (future.wait_for(timeout_) != std::future_status::ready)
    return failure(std::nullopt,
                   make_error(ec::internal, "the lease manager is gone"));
  return future.get();
}

} // namespace tlm
