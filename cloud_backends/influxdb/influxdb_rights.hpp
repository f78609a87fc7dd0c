#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "cloud_backends/settings.hpp"

namespace tlm {

/// One InfluxDB 2.x permission: `action` on resources of `type`, all of
/// them in the org, or the one with `id`. `org_id` empty: the backend's.
struct influxdb_permission {
  std::string action;
  std::string type;
  std::string id;
  std::string org_id;

  /// InfluxDB's own object, with `org_id` filled in when empty.
  nlohmann::json to_json(const std::string& default_org_id) const;
};

/// What one role of an `influxdb` backend may grant, or what one lease got.
struct influxdb_rights {
  std::vector<influxdb_permission> permissions;

  nlohmann::json to_json(const std::string& default_org_id) const;
};

/// True for rights that let a token holder make tokens, users or orgs, read
/// other tokens or secrets, or change the instance: any action on
/// `authorizations`, `secrets` or `instance`; write on `users`, `orgs`,
/// `remotes` or `replications` (the last two copy data out of the server).
bool influxdb_dangerous(const influxdb_permission& p);

/// One role's object: `permissions` (InfluxDB's own objects) and
/// `allow_dangerous` (required for the rights above).
influxdb_rights read_influxdb_role(settings_reader& in);

/// The shorthand for the role `default`: `default_permissions` (never
/// dangerous).
influxdb_rights read_influxdb_shorthand(settings_reader& in);

/// The rights a create gets: the role's, or `options.permissions` when
/// each of them falls inside one of the role's (same action, type and org,
/// and the same id unless the role's covers every id), or
/// `invalid_request` naming the option.
caf::expected<influxdb_rights> narrow_influxdb(const influxdb_rights& role,
                                               const std::string& role_name,
                                               const std::string& org_id,
                                               const nlohmann::json& options);

} // namespace tlm
