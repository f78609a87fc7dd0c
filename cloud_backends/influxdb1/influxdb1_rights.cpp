#include "cloud_backends/influxdb1/influxdb1_rights.hpp"

#include <algorithm>

#include "cloud_backends/roles.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

bool privilege_name(const std::string& p) {
  return p == "READ" || p == "WRITE" || p == "ALL";
}

/// ALL holds READ and WRITE; READ and WRITE hold only themselves.
bool privilege_within(const std::string& inner, const std::string& outer) {
  return inner == outer || outer == "ALL";
}

void check_databases(settings_reader& in, const char* key,
                     const std::vector<std::string>& databases) {
  for (auto& d : databases)
    if (!influxdb1_plain_name(d))
      in.fail(key, "must hold database names of 1 to 200 of [A-Za-z0-9_.-]");
}

} // namespace

bool influxdb1_plain_name(const std::string& text) {
  return !text.empty() && text.size() <= 200
         && std::all_of(text.begin(), text.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '_'
                     || c == '-' || c == '.';
            });
}

std::vector<std::string>
influxdb1_rights::grants(const std::string& quoted_user) const {
  std::vector<std::string> result;
  if (admin)
    result.push_back("GRANT ALL PRIVILEGES TO " + quoted_user);
  for (auto& d : databases)
    result.push_back("GRANT " + privilege + " ON \"" + d + "\" TO "
                     + quoted_user);
  return result;
}

json influxdb1_rights::to_json() const {
  json j{{"databases", databases}, {"privilege", privilege}};
  if (admin)
    j["admin"] = true;
  return j;
}

influxdb1_rights read_influxdb1_role(settings_reader& in) {
  influxdb1_rights r;
  r.databases = in.optional_strings("databases", {});
  r.privilege = in.optional_string("privilege", "ALL");
  r.admin = in.optional_bool("admin", false);
  auto allow_dangerous = in.optional_bool("allow_dangerous", false);
  check_databases(in, "databases", r.databases);
  if (!privilege_name(r.privilege))
    in.fail("privilege", "must be READ, WRITE or ALL");
  if (r.databases.empty() && !r.admin)
    in.fail("databases", "is required: a non-empty array of database names");
  if (r.admin && !allow_dangerous)
    in.fail("admin", "grants ALL PRIVILEGES on the server (users, databases)"
                     " and needs \"allow_dangerous\": true in the role");
  return r;
}

influxdb1_rights read_influxdb1_shorthand(settings_reader& in) {
  influxdb1_rights r;
  auto database = in.optional_string("default_database", "");
  r.privilege = in.optional_string("default_privilege", "ALL");
  if (database.empty())
    in.fail("default_database",
            "is required (or configure roles) and must be a non-empty string");
  else
    r.databases = {database};
  check_databases(in, "default_database", r.databases);
  if (!privilege_name(r.privilege))
    in.fail("default_privilege", "must be READ, WRITE or ALL");
  return r;
}

caf::expected<influxdb1_rights> narrow_influxdb1(const influxdb1_rights& role,
                                                 const std::string& role_name,
                                                 const json& options) {
  auto result = role;
  for (auto& [key, value] : options.items()) {
    if (key == "role")
      continue;
    if (key != "database" && key != "privilege")
      return make_error(ec::invalid_request,
                        "the influxdb1 backend takes the options ttl, role, "
                        "database and privilege (strings), not '"
                          + key + "'");
    if (!value.is_string())
      return option_error(key, "must be a string");
  }
  if (auto i = options.find("privilege"); i != options.end()) {
    auto p = i->get<std::string>();
    if (!privilege_name(p))
      return option_error("privilege", "must be READ, WRITE or ALL (ALL "
                                       "PRIVILEGES on the server comes only "
                                       "from a role)");
    if (!privilege_within(p, role.privilege))
      return option_error("privilege", "'" + p + "' is not within role '"
                                         + role_name + "' (privilege "
                                         + role.privilege + ")");
    result.privilege = p;
  }
  if (auto i = options.find("database"); i != options.end()) {
    auto d = i->get<std::string>();
    if (!influxdb1_plain_name(d))
      return option_error("database", "must be 1 to 200 of [A-Za-z0-9_.-]");
    if (!role.admin
        && std::find(role.databases.begin(), role.databases.end(), d)
             == role.databases.end()) {
      std::string list;
      for (auto& x : role.databases)
        list += (list.empty() ? "" : ", ") + x;
      return option_error("database", "'" + d + "' is not within role '"
                                        + role_name + "' (databases: " + list
                                        + ")");
    }
    result.databases = {d};
    // Naming one database narrows to it: no server-wide rights beside.
    result.admin = false;
  }
  return result;
}

} // namespace tlm
