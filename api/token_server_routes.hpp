#pragma once

#include <memory>

#include "api/dispatcher.hpp"
#include "api/http_answer.hpp"
#include "api/token_server_api.hpp"

namespace tlm {

/// token_server's routes (`token`, `dump` under the prefix) over the same
/// actions as every other route: a create, an exchange, a get and a
/// revoke, and pages of `list`. Auth is our API-key check.
http_surface token_server_surface(dispatcher& d, token_server_settings s);

} // namespace tlm
