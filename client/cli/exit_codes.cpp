#include "cli/exit_codes.hpp"

namespace tlm::inline client_api::cli {

int exit_code_for(errc code) {
  switch (code) {
    case errc::connection_failed:
    case errc::timeout:
    case errc::bad_reply:
    case errc::unsupported: return exit_connection;
    case errc::unauthorized: return exit_unauthorized;
    case errc::not_found:
    case errc::invalid_token: return exit_not_found;
    case errc::invalid_request:
    case errc::not_renewable:
    case errc::unknown_backend:
    case errc::too_large: return exit_refused;
    case errc::cache_error: return exit_usage;
    default: return exit_server;
  }
}

std::string exit_codes_help() {
  return "Exit codes:\n"
         "  0  success\n"
         "  1  unexpected failure in tlm itself\n"
         "  2  usage: bad flags, config file, address, key or cache file\n"
         "  3  connection: tlmd unreachable, no reply in time, bad reply, "
         "TLS asked for\n"
         "  4  unauthorized: API key missing or wrong\n"
         "  5  not found: no such lease or job, or the token is not live\n"
         "  6  refused: invalid_request, not_renewable, unknown_backend, "
         "too_large\n"
         "  7  server: backend_unavailable, backend_error, storage_error, "
         "overloaded, internal\n"
         "  8  accepted but not confirmed (revoke: revocation_pending), or "
         "health degraded\n"
         "  9  keep: the lease was lost and could not be replaced\n"
         "  keep -- CMD exits with CMD's status (128+N when killed by "
         "signal N)\n";
}

} // namespace tlm::inline client_api::cli
