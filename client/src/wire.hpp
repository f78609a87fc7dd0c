#pragma once

// The protocol's JSON, client side: requests from structs, replies into
// results. Pure functions, tested without sockets.

#include <string>

#include <nlohmann/json.hpp>

#include "tlm/lease.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api::wire {

using nlohmann::json;

/// A reply as it came: the parsed object, or the transport's failure.
using reply = result<json>;

/// The create message; `invalid_request` when options or meta are not
/// JSON objects.
result<json> create_message(const create_request& req);
json list_message(const list_filter& filter, const std::string& cursor);

/// `2026-11-23T14:03:52.123Z` <-> a time point (milliseconds).
std::string format_time(wall_time t);
result<wall_time> parse_time(const std::string& text);

/// A lease object of the protocol (also the cache file's form).
json lease_to_json(const lease& x);
result<lease> lease_from_json(const json& j);

/// Reads a reply text (one line or an HTTP body).
reply parse_reply(const std::string& text);

/// The failure a reply carries, if it is one (`accepted` is not).
std::optional<failure> failure_of(const json& j);

result<lease> lease_reply(const reply& r);
result<renewal> renewal_reply(const reply& r);
result<revoke_outcome> revoke_reply(const reply& r);
result<lease_page> page_reply(const reply& r);
result<job> job_reply(const reply& r);
result<health> health_reply(const reply& r);

} // namespace tlm::inline client_api::wire
