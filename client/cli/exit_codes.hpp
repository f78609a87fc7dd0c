#pragma once

// The `tlm` exit codes, one per failure class, so scripts can branch.

#include <string>

#include "tlm/result.hpp"

namespace tlm::inline client_api::cli {

enum exit_code : int {
  exit_ok = 0,
  exit_internal = 1,     ///< a bug or an unexpected failure in tlm itself
  exit_usage = 2,        ///< bad flags, config, address or local files
  exit_connection = 3,   ///< cannot reach tlmd, no reply in time, bad reply
  exit_unauthorized = 4, ///< the API key is missing or wrong
  exit_not_found = 5,    ///< no such lease, job or live token
  exit_refused = 6,      ///< the server refused the request as asked
  exit_server = 7,       ///< tlmd or its backend failed or is overloaded
  exit_pending = 8,      ///< revoke not confirmed yet; health degraded
  exit_lost = 9,         ///< keep: the lease was lost and not replaced
};

/// The exit code of a failure's class.
int exit_code_for(errc code);

/// The table above as text, for `--help`.
std::string exit_codes_help();

} // namespace tlm::inline client_api::cli
