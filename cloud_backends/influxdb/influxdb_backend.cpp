#include "cloud_backends/influxdb/influxdb_backend.hpp"

#include <mutex>

#include <nlohmann/json.hpp>

#include "cloud_backends/http_client.hpp"
#include "cloud_backends/influxdb/influxdb_rights.hpp"
#include "cloud_backends/lease_mark.hpp"
#include "cloud_backends/remote_backend.hpp"
#include "cloud_backends/roles.hpp"
#include "cloud_backends/service_errors.hpp"
#include "cloud_backends/settings.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

/// InfluxDB's own `{"code","message"}` text, empty if there is none.
std::string influx_message(const http_response& resp) {
  auto body = json::parse(resp.body, nullptr, false);
  if (body.is_object() && body.contains("message")
      && body["message"].is_string())
    return body["message"].get<std::string>();
  return {};
}

class influxdb_backend : public remote_backend {
public:
  influxdb_backend(std::string name, service_errors errors,
                   std::shared_ptr<http_client> http, std::string admin_token,
                   std::string org, std::string org_id,
                   role_table<influxdb_rights> roles, remote_limits limits)
    : remote_backend(std::move(name), limits),
      errors_(std::move(errors)),
      http_(std::move(http)),
      auth_{{"Authorization", "Token " + admin_token}},
      org_(std::move(org)),
      org_id_(std::move(org_id)),
      roles_(std::move(roles)) {
    // nop
  }

  caf::expected<cloud_token> create(const std::string& lease_id, int64_t,
                                    const json& options) override {
    // The role is checked before the org is looked up: a refused create
    // costs no request.
    auto role = roles_.pick(name_, options);
    if (!role)
      return std::move(role.error());
    auto org_id = resolve_org();
    if (!org_id)
      return std::move(org_id.error());
    auto rights = narrow_influxdb(*role->rights, role->name, *org_id, options);
    if (!rights)
      return std::move(rights.error());
    auto permissions = rights->to_json(*org_id);
    json body{{"orgID", *org_id},
              {"permissions", permissions},
              {"description", description_mark.of(lease_id)}};
    auto resp = http_->send("POST", "/api/v2/authorizations", body.dump(),
                            auth_);
    if (!resp)
      return std::move(resp.error());
    if (resp->status != 201)
      return failure(*resp, true);
    auto created = json::parse(resp->body, nullptr, false);
    if (!created.is_object() || !created.contains("id")
        || !created.contains("token"))
      return errors_.unexpected("a create without id or token");
    return cloud_token{
      created["id"].get<std::string>(), created["token"].get<std::string>(),
      json{
        {"orgID", *org_id}, {"role", role->name}, {"permissions", permissions}}
        .dump(),
      lease_id};
  }

  caf::error revoke(const std::string& backend_id) override {
    auto resp = http_->send(
      "DELETE", "/api/v2/authorizations/" + url_encode(backend_id), {}, auth_);
    if (!resp)
      return std::move(resp.error());
    // 404: deleted before, which is what we want.
    if (resp->status == 204 || resp->status == 404)
      return caf::none;
    return failure(*resp, false);
  }

  caf::expected<std::vector<cloud_token>> get_all() override {
    auto org_id = resolve_org();
    if (!org_id)
      return std::move(org_id.error());
    auto resp = http_->send(
      "GET", "/api/v2/authorizations?orgID=" + url_encode(*org_id), {}, auth_);
    if (!resp)
      return std::move(resp.error());
    if (resp->status != 200)
      return failure(*resp, false);
    auto list = json::parse(resp->body, nullptr, false);
    std::vector<cloud_token> result;
    if (!list.is_object() || !list["authorizations"].is_array())
      return result;
    for (auto& a : list["authorizations"])
      if (auto token = description_mark.token(a.value("id", ""),
                                              a.value("token", ""),
                                              a.value("description", "")))
        result.push_back(std::move(*token));
    return result;
  }

  std::string describe() const override {
    return "influxdb '" + name_ + "' at " + http_->base_url();
  }

private:
  /// Maps an InfluxDB answer to our codes. `creating`: a 400/422 is the
  /// client's request (e.g. bad permissions), not our configuration.
  caf::error failure(const http_response& resp, bool creating) const {
    return errors_.of_status(resp.status, influx_message(resp), creating);
  }

  caf::error unknown_org() const {
    return make_error(ec::backend_error, errors_.service() + " has no org '"
                                           + org_ + "': check backends." + name_
                                           + ".org");
  }

  /// The org id, from the config or looked up once by name.
  caf::expected<std::string> resolve_org() {
    std::lock_guard<std::mutex> guard{org_mtx_};
    if (!org_id_.empty())
      return org_id_;
    auto resp = http_->send("GET", "/api/v2/orgs?org=" + url_encode(org_), {},
                            auth_);
    if (!resp)
      return std::move(resp.error());
    if (resp->status == 404)
      return unknown_org();
    if (resp->status != 200)
      return failure(*resp, false);
    auto body = json::parse(resp->body, nullptr, false);
    if (!body.is_object() || !body["orgs"].is_array() || body["orgs"].empty()
        || !body["orgs"][0].contains("id"))
      return unknown_org();
    org_id_ = body["orgs"][0]["id"].get<std::string>();
    return org_id_;
  }

  service_errors errors_;
  std::shared_ptr<http_client> http_;
  http_client::headers auth_;
  std::string org_;
  std::mutex org_mtx_;
  std::string org_id_;
  role_table<influxdb_rights> roles_;
};

} // namespace

caf::expected<std::shared_ptr<cloud_backend>>
make_influxdb_backend(const std::string& name, const json& settings) {
  settings_reader in{name, settings};
  auto url = in.http_url("url");
  auto token = in.secret_file("token_file");
  auto org = in.optional_string("org", "");
  auto org_id = in.optional_string("org_id", "");
  auto roles = role_table<influxdb_rights>::read(
    in, {"default_permissions"}, read_influxdb_role, read_influxdb_shorthand);
  auto limits = remote_limits::read(in, 8);
  if (org.empty() == org_id.empty())
    in.fail("org", "or org_id must be set (exactly one of them)");
  if (auto err = in.finish())
    return err;
  service_errors errors{"InfluxDB '" + name + "'", url, "admin token",
                        in.full_key("token_file") + " and its permissions"};
  auto http = std::make_shared<http_client>(url, limits.timeout, errors);
  return std::make_shared<influxdb_backend>(
    name, std::move(errors), std::move(http), std::move(token), std::move(org),
    std::move(org_id), std::move(roles), limits);
}

} // namespace tlm
