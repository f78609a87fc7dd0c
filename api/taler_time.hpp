#pragma once

// GNU Taler's JSON time shapes (design document 049, Taler's common
// types): a Timestamp is `{"t_s": <seconds> | "never"}`, a RelativeTime
// `{"d_us": <microseconds> | "forever"}`. Pure functions, exactly as the
// document defines them; anything else is refused, saying what is wrong.

#include <cstdint>
#include <limits>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace tlm {

/// "never" / "forever" as a number of milliseconds.
inline constexpr int64_t taler_never_ms = std::numeric_limits<int64_t>::max();

/// A Timestamp as milliseconds since the epoch (`taler_never_ms` for
/// "never"); `name` names the field in the error.
caf::expected<int64_t> parse_taler_timestamp(const nlohmann::json& x,
                                             const std::string& name);

/// A RelativeTime as milliseconds, rounded up to a whole millisecond
/// (`taler_never_ms` for "forever").
caf::expected<int64_t> parse_taler_duration(const nlohmann::json& x,
                                            const std::string& name);

/// `{"t_s": <whole seconds, rounded down>}`, or `{"t_s":"never"}`.
nlohmann::json taler_timestamp(int64_t ms_since_epoch);

/// `{"d_us": <microseconds>}`, or `{"d_us":"forever"}`.
nlohmann::json taler_duration(int64_t ms);

} // namespace tlm
