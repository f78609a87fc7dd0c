#include "cloud_backends/influxdb1/influxdb1_backend.hpp"

#include <Poco/Base64Encoder.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "cloud_backends/http_client.hpp"
#include "cloud_backends/influxdb1/influxdb1_rights.hpp"
#include "cloud_backends/lease_mark.hpp"
#include "cloud_backends/remote_backend.hpp"
#include "cloud_backends/roles.hpp"
#include "cloud_backends/service_errors.hpp"
#include "cloud_backends/settings.hpp"
#include "core/error.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

std::string basic_auth(const std::string& user, const std::string& password) {
  std::ostringstream out;
  Poco::Base64Encoder enc(out);
  enc.rdbuf()->setLineLength(0);
  enc << user << ':' << password;
  enc.close();
  return "Basic " + out.str();
}

class influxdb1_backend : public remote_backend {
public:
  influxdb1_backend(std::string name, service_errors errors,
                    std::shared_ptr<http_client> http, std::string admin_user,
                    std::string admin_password,
                    role_table<influxdb1_rights> roles, remote_limits limits)
    : remote_backend(std::move(name), limits),
      errors_(std::move(errors)),
      http_(std::move(http)),
      auth_{{"Authorization", basic_auth(admin_user, admin_password)},
            {"Content-Type", "application/x-www-form-urlencoded"}},
      roles_(std::move(roles)) {
    // nop
  }

  // The user name carries the lease id, so the token can be found again.
  caf::expected<cloud_token> create(const std::string& lease_id, int64_t,
                                    const json& options) override {
    auto role = roles_.pick(name_, options);
    if (!role)
      return std::move(role.error());
    auto rights = narrow_influxdb1(*role->rights, role->name, options);
    if (!rights)
      return std::move(rights.error());
    if (!influxdb1_plain_name(lease_id))
      return make_error(ec::internal, "lease id is not a plain name");
    auto user = user_name_mark.of(lease_id);
    auto password = random_token(24); // [A-Za-z0-9_-]: no quoting issue
    if (auto err = query("CREATE USER \"" + user + "\" WITH PASSWORD '"
                         + password + "'"))
      return err;
    for (auto& grant : rights->grants("\"" + user + "\"")) {
      if (auto err = query(grant)) {
        revoke(user); // no half-made credentials
        auto text = message_of(err);
        if (text.find("database not found") != std::string::npos)
          return make_error(ec::invalid_request, errors_.service()
                                                   + " refused '" + grant
                                                   + "': database not found");
        return err;
      }
    }
    auto extra = rights->to_json();
    extra["role"] = role->name;
    return cloud_token{user, user + ":" + password, extra.dump(), lease_id};
  }

  caf::error revoke(const std::string& backend_id) override {
    if (!influxdb1_plain_name(backend_id))
      return caf::none; // we never made such a user
    auto err = query("DROP USER \"" + backend_id + "\"");
    if (err && message_of(err).find("user not found") != std::string::npos)
      return caf::none;
    return err;
  }

  caf::expected<std::vector<cloud_token>> get_all() override {
    auto result = query_result("SHOW USERS");
    if (!result)
      return std::move(result.error());
    std::vector<cloud_token> tokens;
    // {"results":[{"series":[{"columns":["user","admin"],"values":[[..]]}]}]}
    auto& series = (*result)["series"];
    if (!series.is_array())
      return tokens;
    for (auto& s : series)
      for (auto& row : s.value("values", json::array()))
        if (row.is_array() && !row.empty() && row[0].is_string()) {
          auto user = row[0].get<std::string>();
          if (auto token = user_name_mark.token(user, "", user))
            tokens.push_back(std::move(*token));
        }
    return tokens;
  }

  std::string describe() const override {
    return "influxdb1 '" + name_ + "' at " + http_->base_url();
  }

private:
  caf::error query(const std::string& q) {
    auto result = query_result(q);
    return result ? caf::none : std::move(result.error());
  }

  /// Runs one InfluxQL statement as the admin; InfluxQL errors come back
  /// as HTTP 200 with `results[0].error`, so both layers are checked.
  caf::expected<json> query_result(const std::string& q) {
    auto resp = http_->send("POST", "/query", "q=" + url_encode(q), auth_);
    if (!resp)
      return std::move(resp.error());
    auto body = json::parse(resp->body, nullptr, false);
    if (resp->status != 200)
      return errors_.of_status(resp->status, error_text(body), false);
    if (!body.is_object() || !body["results"].is_array()
        || body["results"].empty())
      return errors_.unexpected("without results");
    auto& first = body["results"][0];
    if (auto text = error_text(first); !text.empty())
      return errors_.refused(text);
    return first;
  }

  /// The `error` of an InfluxQL answer (or of one result), if any.
  static std::string error_text(const json& answer) {
    if (answer.is_object() && answer.contains("error")
        && answer["error"].is_string())
      return answer["error"].get<std::string>();
    return {};
  }

  service_errors errors_;
  std::shared_ptr<http_client> http_;
  http_client::headers auth_;
  role_table<influxdb1_rights> roles_;
};

} // namespace

caf::expected<std::shared_ptr<cloud_backend>>
make_influxdb1_backend(const std::string& name, const json& settings) {
  settings_reader in{name, settings};
  auto url = in.http_url("url");
  auto admin_user = in.required_string("admin_user");
  auto admin_password = in.secret_file("admin_password_file");
  auto roles = role_table<influxdb1_rights>::read(
    in, {"default_database", "default_privilege"}, read_influxdb1_role,
    read_influxdb1_shorthand);
  auto limits = remote_limits::read(in, 4);
  if (auto err = in.finish())
    return err;
  service_errors errors{"InfluxDB 1.x '" + name + "'", url, "admin credentials",
                        in.full_key("admin_user") + " and admin_password_file"};
  auto http = std::make_shared<http_client>(url, limits.timeout, errors);
  return std::make_shared<influxdb1_backend>(
    name, std::move(errors), std::move(http), std::move(admin_user),
    std::move(admin_password), std::move(roles), limits);
}

} // namespace tlm
