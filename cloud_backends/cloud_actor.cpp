#include "cloud_backends/cloud_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace tlm {

namespace {

caf::expected<cloud_token> create_one(cloud_actor::pointer self,
                                      cloud_backend& be,
                                      const token_request& req) {
  // Queued behind slow calls past the caller's deadline: the caller has
  // given up, so a token made now would belong to nobody.
  if (deadline_passed(self->clock(), req.deadline_ns))
    return make_error(ec::backend_unavailable,
                      "the create waited too long for the backend");
  auto parsed = nlohmann::json::parse(req.options, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object())
    return make_error(ec::invalid_request, "options must be a JSON object");
  return be.create(req.lease_id, req.ttl_ms, parsed);
}

cloud_actor::behavior_type cloud_behavior(cloud_actor::pointer self,
                                          std::shared_ptr<cloud_backend> be) {
  return {
    [self, be](atom::create,
               const token_request& req) -> caf::result<cloud_token> {
      return to_result(create_one(self, *be, req));
    },
    [self, be](atom::create, const std::vector<token_request>& reqs) {
      token_results out;
      out.tokens.resize(reqs.size());
      out.errors.resize(reqs.size());
      for (size_t i = 0; i < reqs.size(); ++i) {
        auto made = create_one(self, *be, reqs[i]);
        if (made)
          out.tokens[i] = std::move(*made);
        else
          out.errors[i] = std::move(made.error());
      }
      return out;
    },
    [be](atom::revoke, const std::string& id) -> caf::result<atom::ok> {
      if (auto err = be->revoke(id))
        return err;
      return atom::ok_v;
    },
    [be](atom::renew, const std::string& id,
         int64_t ttl_ms) -> caf::result<atom::ok> {
      if (auto err = be->renew(id, ttl_ms))
        return err;
      return atom::ok_v;
    },
    [be](atom::get_all) -> caf::result<std::vector<cloud_token>> {
      return to_result(be->get_all());
    },
    [be](atom::lookup, const std::string& value) -> caf::result<std::string> {
      return to_result(be->lookup(value));
    },
    [be](atom::exchange, const token_swap& swap) -> caf::result<cloud_token> {
      return to_result(be->exchange(swap.backend_id, swap.value));
    },
    [be](atom::adopt, const std::vector<cloud_token>& tokens) {
      be->adopt(tokens);
    },
    [be](atom::describe) -> std::string { return be->describe(); },
  };
}

/// Hands each call to the next worker: a blocking backend serves up to
/// `concurrency()` calls at once, each on its own thread.
cloud_actor::behavior_type
pool_behavior(cloud_actor::stateful_pointer<std::vector<cloud_actor>> self,
              std::vector<cloud_actor> workers) {
  self->state = std::move(workers);
  auto next = [self, i = size_t{0}]() mutable -> const cloud_actor& {
    return self->state[i++ % self->state.size()];
  };
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    for (auto& w : self->state)
      self->send_exit(w, msg.reason);
    self->quit(msg.reason);
  });
  return {
    [self, next](atom::create a, token_request& req) mutable {
      return self->delegate(next(), a, std::move(req));
    },
    [self, next](atom::create a, std::vector<token_request>& reqs) mutable {
      return self->delegate(next(), a, std::move(reqs));
    },
    [self, next](atom::revoke a, std::string& id) mutable {
      return self->delegate(next(), a, std::move(id));
    },
    [self, next](atom::renew a, std::string& id, int64_t ttl) mutable {
      return self->delegate(next(), a, std::move(id), ttl);
    },
    [self, next](atom::get_all a) mutable { return self->delegate(next(), a); },
    [self, next](atom::lookup a, std::string& value) mutable {
      return self->delegate(next(), a, std::move(value));
    },
    [self, next](atom::exchange a, token_swap& swap) mutable {
      return self->delegate(next(), a, std::move(swap));
    },
    [self, next](atom::adopt a, std::vector<cloud_token>& tokens) mutable {
      self->send(next(), a, std::move(tokens));
    },
    [self, next](atom::describe a) mutable {
      return self->delegate(next(), a);
    },
  };
}

} // namespace

cloud_actor spawn_cloud_actor(caf::actor_system& sys,
                              std::shared_ptr<cloud_backend> backend) {
  if (!backend->blocking())
    return sys.spawn(cloud_behavior, std::move(backend));
  auto n = std::max<size_t>(1, backend->concurrency());
  if (n == 1)
    return sys.spawn<caf::detached>(cloud_behavior, std::move(backend));
  std::vector<cloud_actor> workers;
  for (size_t i = 0; i < n; ++i)
    workers.push_back(sys.spawn<caf::detached>(cloud_behavior, backend));
  return sys.spawn(pool_behavior, std::move(workers));
}

} // namespace tlm
