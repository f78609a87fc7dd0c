#pragma once

// The JSON action protocol as pure functions: text in, structs out, and
// back. No I/O here, so every rule is tested without sockets.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/lease.hpp"

namespace tlm {

/// Largest message we read, on TCP (one line) and HTTP (one body).
constexpr size_t max_message_bytes = 1024 * 1024;

// -- commands: one type per action --------------------------------------------

struct create_cmd {
  create_request create;
};

struct get_cmd {
  std::string lease_id;
};

struct revoke_cmd {
  std::string lease_id;
  bool force = false;
};

struct renew_cmd {
  std::string lease_id;
  int64_t ttl_ms = use_default_ttl;
};

struct list_cmd {
  list_query query; ///< `after` already decoded from the cursor.
};

struct exchange_cmd {
  std::string backend;
  std::string token;
  std::string meta = "{}";
};

struct health_cmd {};

struct auth_cmd {
  std::string api_key;
};

struct revoke_prefix_cmd {
  std::string backend;
  std::string tag;
};

struct job_cmd {
  std::string job_id;
};

/// What a valid message asks for.
using command =
  std::variant<health_cmd, create_cmd, get_cmd, revoke_cmd, renew_cmd, list_cmd,
               exchange_cmd, auth_cmd, revoke_prefix_cmd, job_cmd>;

/// One parsed action message. `error` is set when it is not valid (then
/// `cmd` means nothing); the request id is kept whenever the message got
/// far enough to carry one.
struct api_request {
  std::optional<nlohmann::json> request_id;
  caf::error error;
  command cmd;
};

/// Deepest nesting of arrays and objects a message may have; deeper ones
/// are refused before parsing, as walking them recursively could overflow
/// the stack.
constexpr int max_message_depth = 64;

/// True when `text` nests arrays and objects at most `max_message_depth`.
bool nesting_ok(std::string_view text);

/// Parses one message (a JSON object).
api_request parse_request(std::string_view text);

/// Reads an already parsed JSON value as a message.
api_request parse_message(const nlohmann::json& message);

/// `{"result":"success", ...body, "request_id": ...}` as text.
std::string render_success(const std::optional<nlohmann::json>& request_id,
                           nlohmann::json body);

/// `{"result":"failure","error":code,"message":...,"request_id":...}`.
std::string render_failure(const std::optional<nlohmann::json>& request_id,
                           const caf::error& err);

/// A lease as the protocol shows it, with its `value` when it has one;
/// `list` leaves the value out always.
nlohmann::json to_json(const lease& x, bool with_value = true);

/// Appends `text` as a JSON string, escaping what JSON needs escaped and
/// replacing each ill-formed UTF-8 sequence (cut, overlong, surrogate, out
/// of range, a lone continuation byte) with U+FFFD, as nlohmann's
/// `error_handler_t::replace` does: texts from backends (`last_error`) or
/// cut to a length may hold any bytes, and a reply must stay valid JSON.
void append_json_string(std::string& out, std::string_view text);

/// `{"result":"success","lease":{...}}`, written directly: the hot path of
/// every create, get, renew and exchange. The lease shows its `value` when
/// it has one: whoever hands a dead lease here blanks its value first.
/// `capped` (renew) adds `"capped":true`: the total-life cap made the term
/// shorter than asked.
std::string render_lease(const std::optional<nlohmann::json>& request_id,
                         const lease& x, bool capped = false);

/// What `health` shows: `"status"` is `"degraded"` when anything needs an
/// operator, with revocation counts per backend.
nlohmann::json to_json(const health_report& h);

/// A revoke job as the protocol shows it.
nlohmann::json to_json(const job_status& status);

/// `{"result":"success","leases":[...],"next_cursor":...}`.
std::string render_page(const std::optional<nlohmann::json>& request_id,
                        const lease_page& page);

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T14:03:52.123Z`.
std::string rfc3339(int64_t ms_since_epoch);

/// The opaque `list` cursor for a page that ended at `last_id`.
std::string encode_cursor(const std::string& last_id);

/// The lease id inside a cursor, or an `invalid_request` error.
caf::expected<std::string> decode_cursor(const std::string& cursor);

/// The HTTP status that mirrors a protocol result (`ec::none`: 200).
int http_status(ec code);

} // namespace tlm
