#pragma once

// token_server 0.1.15's REST API (one-time tokens for web servers) as pure
// functions: its bodies in, our requests out, and its replies back. The
// routes that call the core with them are in token_server_routes.hpp.

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "api/protocol.hpp"

namespace tlm {

/// token_server's settings, as far as they make sense over our core.
struct token_server_settings {
  /// Where `token` and `dump` live; token_server's own root by default.
  std::string prefix = "/";
  /// `HEAD dump` is served (token_server's `--dump`).
  bool dump = false;
  /// The ttl of leases made here (token_server's `--token-lifetime`).
  int64_t lifetime_ms = 2 * 3'600'000LL;

  /// token_server's own bounds of the lifetime: 30 min to 96 h.
  static constexpr int64_t min_lifetime_ms = 30 * 60'000LL;
  static constexpr int64_t max_lifetime_ms = 96 * 3'600'000LL;
};

/// The tag of every lease made through this surface; `dump` lists them.
inline constexpr const char* token_server_tag = "token_server";

/// The backend of leases made here: one-time tokens are `local` ones.
inline constexpr const char* token_server_backend = "local";

/// `POST token` with `{"meta":{...}}` (required, an object) as a create
/// of a `local` lease living `lifetime_ms`, tagged `token_server_tag`.
api_request parse_token_create(const std::string& body, int64_t lifetime_ms);

/// `PUT token` with `{"token":"...","meta":{...}}` (`meta` optional) as an
/// exchange that merges `meta`.
api_request parse_token_update(const std::string& body);

/// `DELETE token` with `{"token":"..."}`: the token.
caf::expected<std::string> parse_token_remove(const std::string& body);

/// The lease id inside a `local` token value (`<id>.<random>`), or "".
std::string lease_id_of_token(std::string_view token);

/// `{"Ok":{"token":"...","meta":{...}}}` for a lease as our protocol
/// shows it (`value`, `meta`).
std::string render_token_ok(const nlohmann::json& lease);

/// The answer to an unknown, used or expired token, byte for byte.
inline constexpr const char* token_invalid_reply = R"({"Err":"InvalidToken"})";

/// One `dump` entry, as token_server logs it: `{"expires":…,"meta":{…}}`,
/// never a token.
std::string token_dump_line(const nlohmann::json& lease);

} // namespace tlm
