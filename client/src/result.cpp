#include "tlm/result.hpp"

#include <array>
#include <utility>

namespace tlm::inline client_api {

namespace {

constexpr std::array<std::pair<errc, std::string_view>, 17> names{{
  {errc::invalid_request, "invalid_request"},
  {errc::unauthorized, "unauthorized"},
  {errc::not_found, "not_found"},
  {errc::invalid_token, "invalid_token"},
  {errc::not_renewable, "not_renewable"},
  {errc::unknown_backend, "unknown_backend"},
  {errc::backend_unavailable, "backend_unavailable"},
  {errc::backend_error, "backend_error"},
  {errc::storage_error, "storage_error"},
  {errc::too_large, "too_large"},
  {errc::overloaded, "overloaded"},
  {errc::internal, "internal"},
  {errc::connection_failed, "connection_failed"},
  {errc::timeout, "timeout"},
  {errc::bad_reply, "bad_reply"},
  {errc::unsupported, "unsupported"},
  {errc::cache_error, "cache_error"},
}};

} // namespace

std::string_view to_string(errc code) {
  for (auto& [c, name] : names)
    if (c == code)
      return name;
  return "internal";
}

errc errc_from_string(std::string_view name) {
  for (auto& [c, n] : names)
    if (n == name)
      return c;
  return errc::bad_reply;
}

bool is_transient(errc code) {
  switch (code) {
    case errc::backend_unavailable:
    case errc::backend_error:
    case errc::storage_error:
    case errc::overloaded:
    case errc::internal:
    case errc::connection_failed:
    case errc::timeout:
    case errc::bad_reply:
    case errc::cache_error: return true;
    default: return false;
  }
}

} // namespace tlm::inline client_api
