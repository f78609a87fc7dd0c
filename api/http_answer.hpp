#pragma once

// What the HTTP routes hand back to the transport, and the one reader of a
// JSON object body, shared by the action routes and the compatible
// surfaces (token_server, Taler).

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

#include "api/http_framing.hpp"

namespace tlm {

/// An answer ready to write.
struct http_answer {
  int status = 200;
  std::string body;
  /// The `Allow` header of a 405.
  std::string allow;
  /// Close the connection after this answer.
  bool close = false;
  std::string content_type = "application/json";
};

/// A body that must hold a JSON object, or nothing (then `{}`); sets
/// `failed` (`invalid_request`, saying why) when it is anything else.
nlohmann::json object_body(const std::string& body, caf::error& failed);

/// What a compatible surface sees of a request: it answers the paths it
/// owns and leaves every other one (nothing) to the action routes.
struct http_call {
  const std::string& method;
  const http_target& target;
  const std::string& body;
  const std::string& authorization; ///< The header, as sent.
  bool api_key_ok = false; ///< `authorization` passes our API-key check.
};

/// A compatible surface: the paths it owns, and its answers to calls on
/// them. `owns` is cheap and never blocks; `answer` may wait for the core
/// (several calls in turn), so the server runs it on a worker thread.
struct http_surface {
  std::function<bool(const http_target&)> owns;
  std::function<http_answer(const http_call&)> answer;
};

/// The failure object of our protocol with its HTTP status.
http_answer failure_answer(const caf::error& err);

} // namespace tlm
