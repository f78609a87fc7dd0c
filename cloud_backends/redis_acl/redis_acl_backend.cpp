#include "cloud_backends/redis_acl/redis_acl_backend.hpp"

#include <chrono>

#include <Poco/Exception.h>
#include <Poco/Redis/Array.h>
#include <Poco/Redis/Client.h>
#include <Poco/Redis/Error.h>
#include <Poco/Redis/Type.h>
#include <nlohmann/json.hpp>

#include "cloud_backends/connection_pool.hpp"
#include "cloud_backends/lease_mark.hpp"
#include "cloud_backends/redis_acl/redis_rights.hpp"
#include "cloud_backends/remote_backend.hpp"
#include "cloud_backends/roles.hpp"
#include "cloud_backends/service_errors.hpp"
#include "cloud_backends/settings.hpp"
#include "core/error.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;
using Poco::Redis::Array;
using Poco::Redis::RedisType;

class redis_acl_backend : public remote_backend {
public:
  redis_acl_backend(std::string name, service_errors errors, std::string host,
                    int port, std::string admin_user,
                    std::string admin_password, role_table<redis_rights> roles,
                    remote_limits limits)
    : remote_backend(std::move(name), limits),
      errors_(std::move(errors)),
      host_(std::move(host)),
      port_(port),
      admin_user_(std::move(admin_user)),
      admin_password_(std::move(admin_password)),
      roles_(std::move(roles)) {
    // nop
  }

  // The user name carries the lease id, so the token can be found again.
  caf::expected<cloud_token> create(const std::string& lease_id, int64_t,
                                    const json& options) override {
    auto role = roles_.pick(name_, options);
    if (!role)
      return std::move(role.error());
    auto rights = narrow_redis(*role->rights, role->name, options);
    if (!rights)
      return std::move(rights.error());
    auto user = user_name_mark.of(lease_id);
    auto password = random_token(32);
    Array cmd;
    cmd << "ACL"
        << "SETUSER" << user << "reset"
        << "on" << (">" + password);
    for (auto& word : rights->acl_rule())
      cmd << word;
    auto reply = run(cmd);
    if (!reply)
      return std::move(reply.error());
    auto extra = rights->to_json();
    extra["role"] = role->name;
    return cloud_token{user, user + ":" + password, extra.dump(), lease_id};
  }

  caf::error revoke(const std::string& backend_id) override {
    Array cmd;
    cmd << "ACL"
        << "DELUSER" << backend_id;
    auto reply = run(cmd); // 0 deleted: gone already, which is fine
    return reply ? caf::none : std::move(reply.error());
  }

  caf::expected<std::vector<cloud_token>> get_all() override {
    Array cmd;
    cmd << "ACL"
        << "USERS";
    auto reply = run(cmd);
    if (!reply)
      return std::move(reply.error());
    std::vector<cloud_token> tokens;
    if (!(*reply)->isArray())
      return tokens;
    auto& users = static_cast<Poco::Redis::Type<Array>*>(reply->get())->value();
    for (size_t i = 0; i < users.size(); ++i) {
      auto user = users.get<Poco::Redis::BulkString>(i).value();
      if (auto token = user_name_mark.token(user, "", user))
        tokens.push_back(std::move(*token));
    }
    return tokens;
  }

  std::string describe() const override {
    return "redis_acl '" + name_ + "' at " + host_ + ":"
           + std::to_string(port_);
  }

private:
  /// Runs one command as the admin on a pooled connection. Our commands
  /// are idempotent (`SETUSER ... reset`, `DELUSER`), so a pooled
  /// connection the server has dropped is retried once on a fresh one.
  caf::expected<RedisType::Ptr> run(const Array& cmd) {
    for (int attempt = 0;; ++attempt) {
      auto client = take(attempt > 0);
      if (!client)
        return std::move(client.error());
      auto started = std::chrono::steady_clock::now();
      try {
        auto reply = (*client)->sendCommand(cmd);
        pool_.give_back(std::move(*client));
        if (!reply->isError())
          return reply;
        return errors_.refused(error_text(reply));
      } catch (const Poco::Exception& e) {
        if (attempt == 0)
          continue;
        return unavailable(e, started);
      }
    }
  }

  /// A pooled connection, or a fresh one when `fresh` or none is idle.
  caf::expected<std::unique_ptr<Poco::Redis::Client>> take(bool fresh) {
    if (!fresh)
      if (auto client = pool_.take_idle())
        return client;
    auto t = Poco::Timespan(
      static_cast<Poco::Timespan::TimeDiff>(timeout().count() * 1000));
    auto started = std::chrono::steady_clock::now();
    try {
      auto client = std::make_unique<Poco::Redis::Client>();
      client->connect(host_, port_, t);
      client->setReceiveTimeout(t);
      Array auth;
      auth << "AUTH" << admin_user_ << admin_password_;
      auto reply = client->sendCommand(auth);
      if (reply->isError())
        return errors_.rejected_credential(error_text(reply));
      return client;
    } catch (const Poco::Exception& e) {
      return unavailable(e, started);
    }
  }

  /// Poco's Redis client reports a receive timeout as a lost connection,
  /// so a failure that took the whole timeout counts as one.
  caf::error unavailable(const Poco::Exception& e,
                         std::chrono::steady_clock::time_point started) const {
    if (dynamic_cast<const Poco::TimeoutException*>(&e) != nullptr
        || std::chrono::steady_clock::now() - started >= timeout())
      return errors_.timed_out();
    return errors_.unreachable(e.displayText());
  }

  static std::string error_text(const RedisType::Ptr& reply) {
    return static_cast<const Poco::Redis::Type<Poco::Redis::Error>*>(
             reply.get())
      ->value()
      .getMessage();
  }

  service_errors errors_;
  std::string host_;
  int port_;
  std::string admin_user_;
  std::string admin_password_;
  role_table<redis_rights> roles_;
  connection_pool<Poco::Redis::Client> pool_;
};

} // namespace

caf::expected<std::shared_ptr<cloud_backend>>
make_redis_acl_backend(const std::string& name, const json& settings) {
  settings_reader in{name, settings};
  auto host = in.optional_string("host", "127.0.0.1");
  auto port = in.optional_int("port", 6379, 1, 65535);
  auto admin_user = in.optional_string("admin_user", "default");
  auto admin_password = in.secret_file("admin_password_file");
  auto roles = role_table<redis_rights>::read(
    in, {"default_key_pattern", "default_categories"}, read_redis_role,
    read_redis_shorthand);
  auto limits = remote_limits::read(in, 4);
  if (auto err = in.finish())
    return err;
  service_errors errors{"Redis '" + name + "'",
                        host + ":" + std::to_string(port), "admin credentials",
                        in.full_key("admin_user") + " and admin_password_file"};
  return std::make_shared<redis_acl_backend>(
    name, std::move(errors), std::move(host), static_cast<int>(port),
    std::move(admin_user), std::move(admin_password), std::move(roles), limits);
}

} // namespace tlm
