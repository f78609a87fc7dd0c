#include "cloud_backends/redis_acl/redis_acl_backend.hpp"

#include <mutex>

#include <Poco/Redis/Array.h>
#include <Poco/Redis/Client.h>
#include <Poco/Redis/Error.h>
#include <Poco/Redis/Type.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/secrets.hpp"
#include "cloud_backends/redis_acl/redis_rights.hpp"
#include "cloud_backends/remote_backend.hpp"
#include "cloud_backends/roles.hpp"
#include "cloud_backends/settings.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;
using Poco::Redis::Array;
using Poco::Redis::RedisType;

constexpr std::string_view user_prefix = "tlm_";

class redis_acl_backend : public remote_backend {
public:
  redis_acl_backend(std::string name, std::string host, int port,
                    std::string admin_user, std::string admin_password,
                    role_table<redis_rights> roles, remote_limits limits)
    : remote_backend(std::move(name), limits),
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
    auto user = std::string{user_prefix} + lease_id;
    auto password = random_token(32);
    Array cmd;
    cmd << "ACL" << "SETUSER" << user << "reset" << "on" << (">" + password);
    for (auto& word : rights->acl_rule())
      cmd << word;
    auto reply = run(cmd);
    if (!reply)
      return std::move(reply.error());
    auto extra = rights->to_json();
    extra["role"] = role->name;
    return cloud_token{user, user + ":" + password, extra.dump()};
  }

  caf::error revoke(const std::string& backend_id) override {
    Array cmd;
    cmd << "ACL" << "DELUSER" << backend_id;
    auto reply = run(cmd); // 0 deleted: gone already, which is fine
    return reply ? caf::none : std::move(reply.error());
  }

  caf::expected<cloud_token> get(const std::string& backend_id) override {
    Array cmd;
    cmd << "ACL" << "GETUSER" << backend_id;
    auto reply = run(cmd);
    if (!reply)
      return std::move(reply.error());
    if (!(*reply)->isArray())
      return make_error(ec::not_found, backend_name() + " has no user '"
                                         + backend_id + "'");
    return cloud_token{backend_id, "", "{}"};
  }

  caf::expected<std::vector<cloud_token>> get_all() override {
    Array cmd;
    cmd << "ACL" << "USERS";
    auto reply = run(cmd);
    if (!reply)
      return std::move(reply.error());
    std::vector<cloud_token> tokens;
    if (!(*reply)->isArray())
      return tokens;
    auto& users = static_cast<Poco::Redis::Type<Array>*>(reply->get())->value();
    for (size_t i = 0; i < users.size(); ++i) {
      auto user = users.get<Poco::Redis::BulkString>(i).value();
      if (user.rfind(user_prefix, 0) == 0)
        tokens.push_back(cloud_token{
          user, "", json{{"lease_id", user.substr(user_prefix.size())}}.dump()});
    }
    return tokens;
  }

  std::string describe() const override {
    return "redis_acl '" + name_ + "' at " + host_ + ":"
           + std::to_string(port_);
  }

private:
  std::string backend_name() const {
    return "Redis '" + name_ + "'";
  }

  /// Runs one command as the admin on a pooled connection. Our commands
  /// are idempotent (`SETUSER ... reset`, `DELUSER`), so a pooled
  /// connection the server has dropped is retried once on a fresh one.
  caf::expected<RedisType::Ptr> run(const Array& cmd) {
    for (int attempt = 0;; ++attempt) {
      auto client = take(attempt > 0);
      if (!client)
        return std::move(client.error());
      try {
        auto reply = (*client)->sendCommand(cmd);
        give_back(std::move(*client));
        if (!reply->isError())
          return reply;
        auto text = static_cast<Poco::Redis::Type<Poco::Redis::Error>*>(
                      reply.get())
                      ->value()
                      .getMessage();
        return make_error(ec::backend_error, backend_name() + " refused: "
                                               + text.substr(0, 240));
      } catch (const Poco::Exception& e) {
        if (attempt == 0)
          continue;
        return make_error(ec::backend_unavailable,
                          backend_name() + " at " + host_ + ":"
                            + std::to_string(port_)
                            + " is unreachable: " + e.displayText());
      }
    }
  }

  /// A pooled connection, or a fresh one when `fresh` or none is idle.
  caf::expected<std::unique_ptr<Poco::Redis::Client>> take(bool fresh) {
    if (!fresh) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!idle_.empty()) {
        auto client = std::move(idle_.back());
        idle_.pop_back();
        return client;
      }
    }
    auto t = Poco::Timespan(
      static_cast<Poco::Timespan::TimeDiff>(timeout().count() * 1000));
    try {
      auto client = std::make_unique<Poco::Redis::Client>();
      client->connect(host_, port_, t);
      client->setReceiveTimeout(t);
      Array auth;
      auth << "AUTH" << admin_user_ << admin_password_;
      auto reply = client->sendCommand(auth);
      if (reply->isError())
        return make_error(ec::backend_error,
                          backend_name() + " rejected the admin credentials: "
                                           "check backends."
                            + name_ + ".admin_user and admin_password_file");
      return client;
    } catch (const Poco::Exception& e) {
      return make_error(ec::backend_unavailable,
                        backend_name() + " at " + host_ + ":"
                          + std::to_string(port_)
                          + " is unreachable: " + e.displayText());
    }
  }

  void give_back(std::unique_ptr<Poco::Redis::Client> client) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (idle_.size() < 64)
      idle_.push_back(std::move(client));
  }

  std::string host_;
  int port_;
  std::string admin_user_;
  std::string admin_password_;
  role_table<redis_rights> roles_;
  std::mutex mtx_;
  std::vector<std::unique_ptr<Poco::Redis::Client>> idle_;
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
  return std::make_shared<redis_acl_backend>(
    name, std::move(host), static_cast<int>(port), std::move(admin_user),
    std::move(admin_password), std::move(roles), limits);
}

} // namespace tlm
