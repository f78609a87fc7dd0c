#pragma once

// GNU Taler's token API (design document 049, corebank's shape) as pure
// functions: its request bodies and query in, its reply shapes out. Not
// served yet: the routes need the lease fields scope, last_access and
// row_id (issue 15, part 3).

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace tlm {

/// A `TokenRequest`: `scope` (required), `duration`, `refreshable`,
/// `description`.
struct taler_token_request {
  std::string scope;
  /// Absent: the server's default; "forever": `taler_never_ms`.
  std::optional<int64_t> duration_ms;
  bool refreshable = false;
  std::string description;
};

/// Reads a `POST …/token` body; unknown fields and wrong types are refused
/// naming the field.
caf::expected<taler_token_request>
parse_taler_token_request(const std::string& body);

/// The duration a token gets: the asked one bounded by our ttl bounds, or
/// `default_ms` when none was asked.
int64_t taler_token_ttl(const taler_token_request& req, int64_t default_ms,
                        int64_t min_ms, int64_t max_ms);

/// `GET …/tokens?delta=&start=`: at most |delta| rows strictly older
/// (delta < 0) or younger (delta > 0) than `start`.
struct taler_page {
  int64_t delta = -20;
  std::optional<int64_t> start; ///< Absent: from the newest or oldest end.
};

/// Reads the query; `delta` is a non-zero integer of at most 1000 rows.
caf::expected<taler_page>
parse_taler_page(const std::vector<std::pair<std::string, std::string>>& query);

/// `TokenSuccessResponse`: `{"access_token":…,"expiration":{"t_s":…}}`.
nlohmann::json taler_token_success(const std::string& access_token,
                                   int64_t expires_ms);

/// What a `TokenInfo` shows of a token.
struct taler_token_info {
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  std::string scope;
  bool refreshable = false;
  std::string description;
  int64_t last_access_ms = 0;
  int64_t row_id = 0;
};

/// `TokenInfo`, with `description` left out when empty (it is optional).
nlohmann::json to_json(const taler_token_info& x);

} // namespace tlm
