#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "cloud_backends/settings.hpp"

namespace tlm {

/// What one role of an `influxdb1` backend may grant, or what one lease
/// got: one privilege (READ, WRITE or ALL, where ALL is READ and WRITE) on
/// each of some databases, and perhaps server-wide admin.
struct influxdb1_rights {
  std::vector<std::string> databases;
  std::string privilege = "ALL";
  /// `ALL PRIVILEGES` on the server: admin, who may create users and
  /// drop databases. Only a role with `allow_dangerous` may have it.
  bool admin = false;

  /// The InfluxQL statements that give user `quoted_user` these rights.
  std::vector<std::string> grants(const std::string& quoted_user) const;

  /// For the token's `extra`: the rights, never a secret.
  nlohmann::json to_json() const;
};

/// Names we put into InfluxQL: lease ids and database names. Restricting
/// them is simpler and safer than escaping.
bool influxdb1_plain_name(const std::string& text);

/// One role's object: `databases`, `privilege` (default ALL), `admin`,
/// `allow_dangerous` (required for `admin`).
influxdb1_rights read_influxdb1_role(settings_reader& in);

/// The shorthand for the role `default`: `default_database` and
/// `default_privilege` (never admin).
influxdb1_rights read_influxdb1_shorthand(settings_reader& in);

/// The rights a create gets: the role's, narrowed by `options.database`
/// (one of the role's) and `options.privilege` (READ or WRITE within the
/// role's ALL, or the role's own), or `invalid_request` naming the option.
caf::expected<influxdb1_rights> narrow_influxdb1(const influxdb1_rights& role,
                                                 const std::string& role_name,
                                                 const nlohmann::json& options);

} // namespace tlm
