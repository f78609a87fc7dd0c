#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Builds the `redis_acl` backend: Redis ACL users named `tlm_<lease id>`
/// (`ACL SETUSER ... on >password ~<pattern> +@<category> +<command>`),
/// the lease value being `user:password`, the rights those of a role
/// (`redis_rights.hpp`) narrowed by the options. Settings: `host`, `port`,
/// `admin_user`, `admin_password_file`, `roles` and `default_role` or the
/// shorthand `default_key_pattern` (default `tlm:*`) and
/// `default_categories` (default `["read","write"]`), `timeout_ms`,
/// `max_in_flight`.
caf::expected<std::shared_ptr<cloud_backend>>
make_redis_acl_backend(const std::string& name, const nlohmann::json& settings);

} // namespace tlm
