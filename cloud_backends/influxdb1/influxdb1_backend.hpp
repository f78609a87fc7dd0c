#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Builds the `influxdb1` backend: InfluxDB 1.x users named
/// `tlm_<lease id>`, the lease value being `user:password` (basic auth),
/// with the grants of a role (`influxdb1_rights.hpp`) narrowed by the
/// options. Settings: `url`, `admin_user`, `admin_password_file`, `roles`
/// and `default_role` or the shorthand `default_database` and
/// `default_privilege` (READ, WRITE or ALL; default ALL), `timeout_ms`
/// (default 10000), `max_in_flight` (default 4).
caf::expected<std::shared_ptr<cloud_backend>>
make_influxdb1_backend(const std::string& name, const nlohmann::json& settings);

} // namespace tlm
