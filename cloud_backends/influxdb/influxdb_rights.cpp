#include "cloud_backends/influxdb/influxdb_rights.hpp"

#include <algorithm>
#include <set>

#include "cloud_backends/roles.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

/// The resource types of InfluxData's contract (OSS has all but the last
/// three). A type outside it would be refused by the service anyway; here
/// a typo refuses the start instead of every create.
const std::set<std::string> resource_types{"authorizations",
                                           "buckets",
                                           "dashboards",
                                           "orgs",
                                           "tasks",
                                           "telegrafs",
                                           "users",
                                           "variables",
                                           "secrets",
                                           "labels",
                                           "views",
                                           "documents",
                                           "notificationRules",
                                           "notificationEndpoints",
                                           "checks",
                                           "dbrp",
                                           "annotations",
                                           "sources",
                                           "scrapers",
                                           "notebooks",
                                           "remotes",
                                           "replications",
                                           "instance",
                                           "flows",
                                           "functions",
                                           "subscriptions"};

bool influx_id(const std::string& text) {
  return text.size() == 16 && std::all_of(text.begin(), text.end(), [](char c) {
           return std::isdigit(static_cast<unsigned char>(c))
                  || (c >= 'a' && c <= 'f');
         });
}

std::string string_field(const json& object, const char* key) {
  auto i = object.find(key);
  return i != object.end() && i->is_string() ? i->get<std::string>() : "";
}

/// Parses one permission object; the problem is returned in `problem`.
/// Only the fields that decide what it grants are taken: anything else
/// (`name`, `org`) could make two objects look alike that are not.
influxdb_permission parse_permission(const json& p, std::string& problem) {
  influxdb_permission result;
  if (!p.is_object() || !p.contains("resource") || !p["resource"].is_object()) {
    problem = "must be {\"action\",\"resource\"} objects";
    return result;
  }
  for (auto& [key, _] : p.items())
    if (key != "action" && key != "resource") {
      problem = "takes only action and resource, not '" + key + "'";
      return result;
    }
  auto& res = p["resource"];
  for (auto& [key, value] : res.items())
    if ((key != "type" && key != "id" && key != "orgID")
        || !value.is_string()) {
      problem = "resource takes only the strings type, id and orgID, not '"
                + key + "'";
      return result;
    }
  result.action = string_field(p, "action");
  result.type = string_field(res, "type");
  result.id = string_field(res, "id");
  result.org_id = string_field(res, "orgID");
  if (result.action != "read" && result.action != "write")
    problem = "action must be read or write";
  else if (resource_types.count(result.type) == 0)
    problem = "has an unknown resource type '" + result.type.substr(0, 40)
              + "'";
  else if (res.contains("id") && !influx_id(result.id))
    problem = "resource id must be 16 hex digits";
  else if (res.contains("orgID") && !influx_id(result.org_id))
    problem = "resource orgID must be 16 hex digits";
  return result;
}

std::string describe(const influxdb_permission& p) {
  return p.action + " on " + p.type + (p.id.empty() ? "" : " " + p.id);
}

influxdb_rights read_permissions(settings_reader& in, const char* key,
                                 const json& list, bool allow_dangerous) {
  influxdb_rights r;
  if (!list.is_array() || list.empty()) {
    in.fail(key, "must be a non-empty array of {\"action\",\"resource\"} "
                 "objects");
    return r;
  }
  for (auto& item : list) {
    std::string problem;
    auto p = parse_permission(item, problem);
    if (!problem.empty()) {
      in.fail(key, problem);
      return r;
    }
    if (influxdb_dangerous(p) && !allow_dangerous)
      in.fail(key, "grants " + describe(p)
                     + ", which can make tokens or "
                       "users, read secrets or copy data out, and needs "
                       "\"allow_dangerous\": true in a role");
    r.permissions.push_back(std::move(p));
  }
  return r;
}

bool within(const influxdb_permission& inner, const influxdb_permission& outer,
            const std::string& org_id) {
  auto org = [&](const influxdb_permission& p) {
    return p.org_id.empty() ? org_id : p.org_id;
  };
  return inner.action == outer.action && inner.type == outer.type
         && org(inner) == org(outer)
         && (outer.id.empty() || inner.id == outer.id);
}

} // namespace

json influxdb_permission::to_json(const std::string& default_org_id) const {
  json res{{"type", type}, {"orgID", org_id.empty() ? default_org_id : org_id}};
  if (!id.empty())
    res["id"] = id;
  return json{{"action", action}, {"resource", res}};
}

json influxdb_rights::to_json(const std::string& default_org_id) const {
  auto list = json::array();
  for (auto& p : permissions)
    list.push_back(p.to_json(default_org_id));
  return list;
}

bool influxdb_dangerous(const influxdb_permission& p) {
  static const std::set<std::string> any{"authorizations", "secrets",
                                         "instance"};
  static const std::set<std::string> write{"users", "orgs", "remotes",
                                           "replications"};
  return any.count(p.type) != 0
         || (p.action == "write" && write.count(p.type) != 0);
}

influxdb_rights read_influxdb_role(settings_reader& in) {
  auto allow_dangerous = in.optional_bool("allow_dangerous", false);
  return read_permissions(in, "permissions",
                          in.optional_json("permissions", nullptr),
                          allow_dangerous);
}

influxdb_rights read_influxdb_shorthand(settings_reader& in) {
  auto list = in.optional_json(
    "default_permissions",
    json::array({{{"action", "read"}, {"resource", {{"type", "buckets"}}}},
                 {{"action", "write"}, {"resource", {{"type", "buckets"}}}}}));
  return read_permissions(in, "default_permissions", list, false);
}

caf::expected<influxdb_rights> narrow_influxdb(const influxdb_rights& role,
                                               const std::string& role_name,
                                               const std::string& org_id,
                                               const json& options) {
  for (auto& [key, _] : options.items())
    if (key != "role" && key != "permissions" && key != "orgID")
      return make_error(ec::invalid_request,
                        "the influxdb backend takes the options ttl, role, "
                        "orgID and permissions, not '"
                          + key + "'");
  // Ockam's create names the org; a lease never reaches beyond ours.
  if (auto o = options.find("orgID");
      o != options.end() && (!o->is_string() || *o != org_id))
    return option_error("orgID", "must be the id of this backend's org ("
                                   + org_id + ")");
  auto i = options.find("permissions");
  if (i == options.end())
    return role;
  if (!i->is_array() || i->empty())
    return option_error("permissions", "must be a non-empty array of "
                                       "{\"action\",\"resource\"} objects");
  influxdb_rights result;
  for (size_t n = 0; n < i->size(); ++n) {
    auto where = "permissions[" + std::to_string(n) + "]";
    std::string problem;
    auto p = parse_permission((*i)[n], problem);
    if (!problem.empty())
      return option_error(where, problem);
    if (std::none_of(role.permissions.begin(), role.permissions.end(),
                     [&](const influxdb_permission& outer) {
                       return within(p, outer, org_id);
                     }))
      return option_error(where, "(" + describe(p) + ") is not within role '"
                                   + role_name + "'");
    result.permissions.push_back(std::move(p));
  }
  return result;
}

} // namespace tlm
