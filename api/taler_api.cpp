#include "api/taler_api.hpp"

#include <algorithm>

#include "api/http_answer.hpp"
#include "api/taler_time.hpp"
#include "core/error.hpp"
#include "core/lease.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

caf::error invalid(const std::string& message) {
  return make_error(ec::invalid_request, message);
}

/// A decimal integer, the whole text.
std::optional<int64_t> integer_of(const std::string& text) {
  try {
    size_t used = 0;
    auto n = std::stoll(text, &used);
    if (used == text.size())
      return n;
  } catch (...) {
    // not a number, or out of range
  }
  return std::nullopt;
}

/// The largest scope we store: a service-defined word, not a document.
constexpr size_t max_scope_bytes = 128;

caf::error read_scope(const json& doc, std::string& out) {
  auto i = doc.find("scope");
  if (i == doc.end() || !i->is_string()
      || i->get_ref<const std::string&>().empty())
    return invalid("scope is required: a non-empty string such as "
                   "\"readonly\" or \"readwrite\"");
  out = i->get<std::string>();
  if (out.size() > max_scope_bytes)
    return invalid("scope must be at most 128 bytes");
  return caf::none;
}

} // namespace

caf::expected<taler_token_request>
parse_taler_token_request(const std::string& body) {
  caf::error failed;
  auto doc = object_body(body, failed);
  if (failed)
    return failed;
  for (auto& [key, _] : doc.items())
    if (key != "scope" && key != "duration" && key != "refreshable"
        && key != "description")
      return invalid("unknown field '" + key.substr(0, 64)
                     + "': a TokenRequest takes scope, duration, "
                       "refreshable, description");
  taler_token_request out;
  if (auto err = read_scope(doc, out.scope))
    return err;
  if (auto d = doc.find("duration"); d != doc.end()) {
    auto ms = parse_taler_duration(*d, "duration");
    if (!ms)
      return std::move(ms.error());
    out.duration_ms = *ms;
  }
  if (auto r = doc.find("refreshable"); r != doc.end()) {
    if (!r->is_boolean())
      return invalid("refreshable must be true or false");
    out.refreshable = r->get<bool>();
  }
  if (auto d = doc.find("description"); d != doc.end()) {
    if (!d->is_string())
      return invalid("description must be a string");
    out.description = d->get<std::string>();
    if (out.description.size() > max_description_bytes)
      return invalid("description must be at most 1024 bytes");
  }
  return out;
}

int64_t taler_token_ttl(const taler_token_request& req, int64_t default_ms,
                        int64_t min_ms, int64_t max_ms) {
  auto asked = req.duration_ms.value_or(default_ms);
  // The document lets the server bound the duration; "forever" is our max.
  return std::clamp(asked, min_ms, max_ms);
}

caf::expected<taler_page> parse_taler_page(
  const std::vector<std::pair<std::string, std::string>>& query) {
  taler_page out;
  for (auto& [key, value] : query) {
    auto n = integer_of(value);
    if (key == "delta") {
      if (!n || *n == 0 || *n < -1000 || *n > 1000)
        return invalid("delta must be a non-zero integer from -1000 to 1000");
      out.delta = *n;
    } else if (key == "start") {
      if (!n || *n < 0)
        return invalid("start must be a row_id: a non-negative integer");
      out.start = *n;
    } else {
      return invalid("unknown query parameter '" + key.substr(0, 64)
                     + "': GET tokens takes delta and start");
    }
  }
  return out;
}

json taler_token_success(const std::string& access_token, int64_t expires_ms) {
  return {{"access_token", access_token},
          {"expiration", taler_timestamp(expires_ms)}};
}

json to_json(const taler_token_info& x) {
  json out{{"creation_time", taler_timestamp(x.created_ms)},
           {"expiration", taler_timestamp(x.expires_ms)},
           {"scope", x.scope},
           {"refreshable", x.refreshable},
           {"last_access", taler_timestamp(x.last_access_ms)},
           {"row_id", x.row_id}};
  if (!x.description.empty())
    out["description"] = x.description;
  return out;
}

} // namespace tlm
