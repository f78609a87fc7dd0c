#include "api/taler_time.hpp"

#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

caf::error invalid(const std::string& message) {
  return make_error(ec::invalid_request, message);
}

/// The one field `key` of a Taler time object: a non-negative integer, or
/// the word `infinite`; nothing else in the object.
caf::expected<int64_t> read_time(const json& x, const std::string& name,
                                 const char* key, const char* infinite,
                                 const char* unit) {
  auto shape = name + " must be {\"" + key + "\": <" + unit + "> or \""
               + infinite + "\"}";
  if (!x.is_object() || x.size() != 1 || !x.contains(key))
    return invalid(shape);
  auto& v = x[key];
  if (v.is_string() && v == infinite)
    return taler_never_ms;
  if (!v.is_number_integer())
    return invalid(shape);
  if (v.is_number_unsigned() ? v.get<uint64_t>() > INT64_MAX
                             : v.get<int64_t>() < 0)
    return invalid(name + "." + key + " must be a non-negative integer of "
                   + unit + " (at most 2^63 - 1)");
  return v.get<int64_t>();
}

} // namespace

caf::expected<int64_t> parse_taler_timestamp(const json& x,
                                             const std::string& name) {
  auto s = read_time(x, name, "t_s", "never", "seconds");
  if (!s || *s == taler_never_ms)
    return s;
  if (*s > taler_never_ms / 1000)
    return invalid(name + ".t_s is too far in the future");
  return *s * 1000;
}

caf::expected<int64_t> parse_taler_duration(const json& x,
                                            const std::string& name) {
  auto us = read_time(x, name, "d_us", "forever", "microseconds");
  if (!us || *us == taler_never_ms)
    return us;
  return *us / 1000 + (*us % 1000 != 0 ? 1 : 0);
}

json taler_timestamp(int64_t ms) {
  if (ms == taler_never_ms)
    return {{"t_s", "never"}};
  // Seconds rounded down, also before the epoch.
  auto s = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
  return {{"t_s", s}};
}

json taler_duration(int64_t ms) {
  if (ms == taler_never_ms || ms > INT64_MAX / 1000)
    return {{"d_us", "forever"}};
  return {{"d_us", ms * 1000}};
}

} // namespace tlm
