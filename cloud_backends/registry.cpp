#include "cloud_backends/registry.hpp"

#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "cloud_backends/influxdb/influxdb_backend.hpp"
#include "cloud_backends/influxdb1/influxdb1_backend.hpp"
#include "cloud_backends/local/local_backend.hpp"
#include "cloud_backends/redis_acl/redis_acl_backend.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using factory = std::function<caf::expected<std::shared_ptr<cloud_backend>>(
  const std::string& name, const nlohmann::json& settings)>;

// One line per backend type.
const std::map<std::string, factory>& factories() {
  static const std::map<std::string, factory> table{
    {"local", make_local_backend},
    {"influxdb", make_influxdb_backend},
    {"influxdb1", make_influxdb1_backend},
    {"redis_acl", make_redis_acl_backend},
  };
  return table;
}

} // namespace

caf::expected<std::shared_ptr<cloud_backend>>
make_cloud_backend(const std::string& name, const nlohmann::json& settings) {
  if (!settings.is_object())
    return make_error(ec::invalid_request,
                      "backends." + name + " must be a JSON object");
  auto type = settings.find("type");
  if (type == settings.end() || !type->is_string())
    return make_error(ec::invalid_request,
                      "backends." + name + ".type must name a backend type");
  auto i = factories().find(type->get<std::string>());
  if (i == factories().end()) {
    std::string known;
    for (auto& t : cloud_backend_types())
      known += (known.empty() ? "" : ", ") + t;
    return make_error(ec::invalid_request,
                      "backends." + name + ".type '" + type->get<std::string>()
                        + "' is unknown (known: " + known + ")");
  }
  return i->second(name, settings);
}

std::vector<std::string> cloud_backend_types() {
  std::vector<std::string> result;
  for (auto& [type, _] : factories())
    result.push_back(type);
  return result;
}

} // namespace tlm
