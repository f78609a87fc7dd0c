#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Builds the `influxdb` backend: InfluxDB 2.x authorizations, each marked
/// with the description `tlm:<lease id>`, with the permissions of a role
/// (`influxdb_rights.hpp`) narrowed by the options. Settings: `url`,
/// `token_file` (the admin token), `org` or `org_id`, `roles` and
/// `default_role` or the shorthand `default_permissions`, `timeout_ms`
/// (default 10000), `max_in_flight` (default 8).
caf::expected<std::shared_ptr<cloud_backend>>
make_influxdb_backend(const std::string& name, const nlohmann::json& settings);

} // namespace tlm
