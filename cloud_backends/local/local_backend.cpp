#include "cloud_backends/local/local_backend.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "cloud_backends/settings.hpp"
#include "core/error.hpp"
#include "core/lease_key.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

/// One-time tokens made and checked in process. A value is
/// `<lease id>.<random>`: the id finds the token, and only a digest of the
/// value is kept, compared in constant time. So the backend holds no
/// secret, and a million tokens take one small table entry each.
class local_backend : public cloud_backend {
public:
  local_backend(std::string name, size_t token_bytes)
    : name_(std::move(name)), token_bytes_(token_bytes) {
    // A rehash of a big table stalls every create of this backend.
    digests_.reserve(1 << 21);
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
    if (options.contains("role"))
      return make_error(ec::invalid_request,
                        "the local backend has no roles: its one-time tokens "
                        "carry no rights to choose (drop options.role)");
    if (!options.empty())
      return make_error(ec::invalid_request,
                        "the local backend takes no options but ttl (got '"
                          + options.begin().key() + "')");
    auto key = lease_key::of(lease_id);
    if (!key)
      return make_error(ec::invalid_request,
                        "'" + lease_id + "' is not a lease id");
    if (shared_)
      return cloud_token{lease_id, fresh_value(lease_id), "{}", lease_id};
    if (digests_.count(*key) != 0)
      return make_error(ec::backend_error,
                        "lease id '" + lease_id + "' is taken");
    auto value = fresh_value(lease_id);
    digests_.emplace(*key, digest_of(value));
    return cloud_token{lease_id, std::move(value), "{}", lease_id};
  }

  caf::error revoke(const std::string& backend_id) override {
    if (auto key = lease_key::of(backend_id))
      digests_.erase(*key);
    return caf::none;
  }

  // The value itself is not kept, so it is not part of the answer.

  caf::expected<std::vector<cloud_token>> get_all() override {
    std::vector<cloud_token> result;
    result.reserve(digests_.size());
    for (auto& [key, _] : digests_)
      result.push_back(cloud_token{key.str(), "", "{}", key.str()});
    return result;
  }

  caf::expected<std::string> lookup(const std::string& value) override {
    if (shared_) { // the id only: the manager checks the stored lease
      auto key = id_of_value(value);
      if (!key)
        return invalid_token();
      return key->str();
    }
    auto key = key_of_value(value);
    if (!key)
      return invalid_token();
    return key->str();
  }

  // Single-threaded inside the actor, so check-and-swap is atomic.
  caf::expected<cloud_token> exchange(const std::string& backend_id,
                                      const std::string& value) override {
    if (shared_) // a fresh value: the stored lease's swap decides who wins
      return cloud_token{backend_id, fresh_value(backend_id), "{}", backend_id};
    auto key = key_of_value(value);
    if (!key || key->view() != backend_id)
      return invalid_token();
    auto fresh = fresh_value(backend_id);
    digests_[*key] = digest_of(fresh);
    return cloud_token{backend_id, std::move(fresh), "{}", backend_id};
  }

  void adopt(const std::vector<cloud_token>& tokens) override {
    if (shared_)
      return;
    for (auto& token : tokens)
      if (auto key = lease_key::of(token.backend_id))
        digests_[*key] = digest_of(token.value);
  }

  void share_leases() override {
    shared_ = true;
    digests_ = {};
  }

  std::string describe() const override {
    if (shared_)
      return "local one-time tokens '" + name_ + "' (kept in shared storage)";
    return "local one-time tokens '" + name_ + "' ("
           + std::to_string(digests_.size()) + " live)";
  }

private:
  /// Half of SHA-256: 128 bits are far beyond guessing, and half the room.
  using digest = std::array<char, 16>;

  static digest digest_of(std::string_view value) {
    auto full = sha256(value);
    digest d;
    std::copy_n(full.begin(), d.size(), d.begin());
    return d;
  }

  static caf::error invalid_token() {
    return make_error(ec::invalid_token,
                      "the token is not a live one-time token");
  }

  std::string fresh_value(const std::string& lease_id) const {
    return lease_id + "." + random_token(token_bytes_);
  }

  /// The lease id a value starts with, if it has that shape.
  static std::optional<lease_key> id_of_value(std::string_view value) {
    auto dot = value.find('.');
    if (dot == std::string_view::npos)
      return std::nullopt;
    return lease_key::of(value.substr(0, dot));
  }

  /// The key of the live token with this value, if there is one.
  std::optional<lease_key> key_of_value(std::string_view value) const {
    auto key = id_of_value(value);
    if (!key)
      return std::nullopt;
    auto i = digests_.find(*key);
    if (i == digests_.end())
      return std::nullopt;
    auto d = digest_of(value);
    if (!constant_time_equal({d.data(), d.size()},
                             {i->second.data(), i->second.size()}))
      return std::nullopt;
    return key;
  }

  std::string name_;
  size_t token_bytes_;
  bool shared_ = false;
  std::unordered_map<lease_key, digest, lease_key_hash> digests_;
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
