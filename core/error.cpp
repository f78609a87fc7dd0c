#include "core/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace tlm {

std::string_view to_string(ec code) {
  switch (code) {
    case ec::none: return "none";
    case ec::invalid_request: return "invalid_request";
    case ec::unauthorized: return "unauthorized";
    case ec::not_found: return "not_found";
    case ec::invalid_token: return "invalid_token";
    case ec::not_renewable: return "not_renewable";
    case ec::unknown_backend: return "unknown_backend";
    case ec::backend_unavailable: return "backend_unavailable";
    case ec::backend_error: return "backend_error";
    case ec::storage_error: return "storage_error";
    case ec::too_large: return "too_large";
    case ec::overloaded: return "overloaded";
    case ec::internal: return "internal";
    case ec::revocation_pending: return "revocation_pending";
  }
  return "internal";
}

caf::error make_error(ec code, std::string message) {
  return caf::make_error(code, std::move(message));
}

ec code_of(const caf::error& err) {
  if (err.category() == caf::atom("tlm") && err.code() > 0
      && err.code() <= static_cast<uint8_t>(ec::revocation_pending))
    return static_cast<ec>(err.code());
  return ec::internal;
}

std::string message_of(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  if (err.category() == caf::atom("system"))
    return "internal error: "
           + caf::to_string(static_cast<caf::sec>(err.code()));
  return "internal error";
}

} // namespace tlm
