#include "cloud_backends/local/local_backend.hpp"

#include <unordered_map>

#include <nlohmann/json.hpp>

#include "actors/error.hpp"
#include "actors/secrets.hpp"
#include "cloud_backends/settings.hpp"

namespace tlm {

namespace {

class local_backend : public cloud_backend {
public:
  local_backend(std::string name, size_t token_bytes)
    : name_(std::move(name)), token_bytes_(token_bytes) {
    // A rehash of a big table stalls every create of this backend.
    value_of_.reserve(1 << 21);
    id_of_.reserve(1 << 21);
  }

  bool blocking() const override {
    return false;
  }

  bool exchangeable() const override {
    return true;
  }

  // The backend id is the lease id: the token is marked by construction.
  caf::expected<cloud_token> create(const std::string& lease_id, int64_t,
                                    const nlohmann::json& options) override {
    if (!options.empty())
      return make_error(ec::invalid_request,
                        "the local backend takes no options but ttl (got '"
                          + options.begin().key() + "')");
    if (value_of_.count(lease_id) != 0)
      return make_error(ec::backend_error,
                        "lease id '" + lease_id + "' is taken");
    auto value = random_token(token_bytes_);
    remember(lease_id, value);
    return cloud_token{lease_id, std::move(value), "{}"};
  }

  caf::error revoke(const std::string& backend_id) override {
    auto i = value_of_.find(backend_id);
    if (i == value_of_.end())
      return caf::none;
    id_of_.erase(sha256(i->second));
    value_of_.erase(i);
    return caf::none;
  }

  caf::expected<cloud_token> get(const std::string& backend_id) override {
    auto i = value_of_.find(backend_id);
    if (i == value_of_.end())
      return make_error(ec::not_found,
                        "the local backend has no token '" + backend_id + "'");
    return cloud_token{backend_id, i->second, "{}"};
  }

  caf::expected<std::vector<cloud_token>> get_all() override {
    std::vector<cloud_token> result;
    result.reserve(value_of_.size());
    for (auto& [id, value] : value_of_)
      result.push_back(cloud_token{id, value, "{}"});
    return result;
  }

  caf::expected<std::string> lookup(const std::string& value) override {
    auto i = id_of_.find(sha256(value));
    if (i == id_of_.end())
      return invalid_token();
    return i->second;
  }

  // Single-threaded inside the actor, so check-and-swap is atomic.
  caf::expected<cloud_token> exchange(const std::string& backend_id,
                                      const std::string& value) override {
    auto i = value_of_.find(backend_id);
    if (i == value_of_.end() || !constant_time_equal(i->second, value))
      return invalid_token();
    id_of_.erase(sha256(i->second));
    value_of_.erase(i);
    auto fresh = random_token(token_bytes_);
    remember(backend_id, fresh);
    return cloud_token{backend_id, std::move(fresh), "{}"};
  }

  void adopt(const std::vector<cloud_token>& tokens) override {
    for (auto& token : tokens)
      remember(token.backend_id, token.value);
  }

  std::string describe() const override {
    return "local one-time tokens '" + name_ + "' ("
           + std::to_string(value_of_.size()) + " live)";
  }

private:
  static caf::error invalid_token() {
    return make_error(ec::invalid_token,
                      "the token is not a live one-time token");
  }

  void remember(const std::string& id, const std::string& value) {
    value_of_[id] = value;
    id_of_[sha256(value)] = id;
  }

  std::string name_;
  size_t token_bytes_;
  std::unordered_map<std::string, std::string> value_of_;  // id -> value
  std::unordered_map<std::string, std::string> id_of_;  // sha256(value) -> id
};

} // namespace

caf::expected<std::shared_ptr<cloud_backend>>
make_local_backend(const std::string& name, const nlohmann::json& settings) {
  settings_reader in{name, settings};
  auto token_bytes = in.optional_int("token_bytes", 32, 32, 128);
  if (auto err = in.finish())
    return err;
  return std::make_shared<local_backend>(name,
                                         static_cast<size_t>(token_bytes));
}

} // namespace tlm
