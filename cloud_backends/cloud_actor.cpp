#include "cloud_backends/cloud_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/error.hpp"

namespace tlm {

namespace {

cloud_actor::behavior_type cloud_behavior(cloud_actor::pointer self,
                                          std::shared_ptr<cloud_backend> be) {
  return {
    [be](atom::create, const std::string& lease_id, int64_t ttl_ms,
         const std::string& options) -> caf::result<cloud_token> {
      auto parsed = nlohmann::json::parse(options, nullptr, false);
      if (parsed.is_discarded() || !parsed.is_object())
        return make_error(ec::invalid_request, "options must be a JSON object");
      return to_result(be->create(lease_id, ttl_ms, parsed));
    },
    [be](atom::revoke, const std::string& id) -> caf::result<atom::ok> {
      if (auto err = be->revoke(id))
        return err;
      return atom::ok_v;
    },
    [be](atom::get, const std::string& id) -> caf::result<cloud_token> {
      return to_result(be->get(id));
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
    [be](atom::exchange, const std::string& id,
         const std::string& value) -> caf::result<cloud_token> {
      return to_result(be->exchange(id, value));
    },
    [be](atom::adopt, const std::vector<cloud_token>& tokens) {
      be->adopt(tokens);
    },
    [be](atom::describe) -> std::string { return be->describe(); },
  };
}

} // namespace

cloud_actor spawn_cloud_actor(caf::actor_system& sys,
                              std::shared_ptr<cloud_backend> backend) {
  if (backend->blocking())
    return sys.spawn<caf::detached>(cloud_behavior, std::move(backend));
  return sys.spawn(cloud_behavior, std::move(backend));
}

} // namespace tlm
