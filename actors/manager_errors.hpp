#pragma once

// The lease manager's replies for refused client actions, shared by its
// source files. Messages never contain an id or a token: a client may
// have sent a token by mistake.

#include <string>

#include "actors/lease_manager.hpp"
#include "core/error.hpp"

namespace tlm {

inline caf::error not_found() {
  return make_error(ec::not_found, "no live lease has this token_id");
}

inline caf::error overload_error() {
  return make_error(ec::overloaded,
                    "too many requests are waiting; retry shortly");
}

inline caf::error invalid_token() {
  return make_error(ec::invalid_token,
                    "the token is not a live one-time token");
}

/// The outcome of a client's revoke that the backend has not confirmed:
/// the lease is dead here and stays stored until the backend does.
inline caf::error revocation_pending(std::string_view backend_name,
                                     std::string_view why) {
  return make_error(ec::revocation_pending,
                    "the lease is dead: tlmd will not serve it again, but "
                    "backend '"
                      + std::string{backend_name}
                      + "' has not confirmed the revocation yet ("
                      + std::string{why}
                      + "); it is retried in the background until it does "
                        "(list with state revoking shows it)");
}

inline caf::error check_ttl(const lease_manager_config& cfg, int64_t ttl) {
  if (ttl < cfg.min_ttl_ms || ttl > cfg.max_ttl_ms)
    return make_error(ec::invalid_request,
                      "ttl must lie between " + std::to_string(cfg.min_ttl_ms)
                        + " and " + std::to_string(cfg.max_ttl_ms) + " ms");
  return caf::none;
}

} // namespace tlm
