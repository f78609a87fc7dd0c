#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "core/lease.hpp"

namespace tlm {

/// One kind of token service (mirrors Ockam's CloudService). A plain class:
/// `cloud_actor` wraps it, on its own thread when `blocking()` says so.
/// Errors are `tlm::ec` codes made with `make_error`, and their messages
/// never contain a token value.
class cloud_backend {
public:
  virtual ~cloud_backend() = default;

  /// True when calls wait on I/O; the actor then runs detached.
  virtual bool blocking() const = 0;

  /// Calls that may run at once. Above 1, the backend must be safe to call
  /// from several threads (one actor thread per call in flight).
  virtual size_t concurrency() const {
    return 1;
  }

  /// How long the lease manager waits for one call of a blocking backend.
  virtual std::chrono::milliseconds timeout() const {
    return std::chrono::seconds(10);
  }

  /// True when the backend supports `lookup` and `exchange`.
  virtual bool exchangeable() const {
    return false;
  }

  /// Creates a token for lease `lease_id`, marking it with that id where
  /// the service allows, so it can be found again after a crash.
  virtual caf::expected<cloud_token> create(const std::string& lease_id,
                                            int64_t ttl_ms,
                                            const nlohmann::json& options) = 0;

  /// Revokes a token. Idempotent: an unknown token counts as revoked.
  virtual caf::error revoke(const std::string& backend_id) = 0;

  /// Extends a token at the service. The default suits services whose
  /// tokens have no expiry of their own: the lease holds it.
  virtual caf::error renew(const std::string& backend_id, int64_t ttl_ms);

  /// Every token this backend manages.
  virtual caf::expected<std::vector<cloud_token>> get_all() = 0;

  /// The backend id of a live token value (`invalid_token` if none).
  virtual caf::expected<std::string> lookup(const std::string& value);

  /// Swaps a live token value for a fresh one.
  virtual caf::expected<cloud_token> exchange(const std::string& backend_id,
                                              const std::string& value);

  /// Re-learns tokens from stored leases at start.
  virtual void adopt(const std::vector<cloud_token>& tokens);

  /// Several instances share the leases (shared storage): keep nothing
  /// about tokens in process that another instance could change, as the
  /// stored lease is the only truth. Backends that keep nothing ignore it.
  virtual void share_leases() {
  }

  /// One line for logs, never a secret.
  virtual std::string describe() const = 0;
};

} // namespace tlm
