// Taler's Timestamp and RelativeTime JSON shapes (issue 15): exactly the
// shapes of design document 049, everything else refused with a reason.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "api/taler_time.hpp"
#include "core/error.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

std::string refusal(const caf::expected<int64_t>& x) {
  REQUIRE(!x);
  CHECK(code_of(x.error()) == ec::invalid_request);
  return message_of(x.error());
}

bool mentions(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("taler: Timestamp {\"t_s\":...} and \"never\"") {
  CHECK(*parse_taler_timestamp(json{{"t_s", 1718270343}}, "start")
        == 1718270343000);
  CHECK(*parse_taler_timestamp(json{{"t_s", 0}}, "start") == 0);
  CHECK(*parse_taler_timestamp(json{{"t_s", "never"}}, "start")
        == taler_never_ms);
  CHECK(mentions(refusal(parse_taler_timestamp(json{{"t_s", -1}}, "start")),
                 "start.t_s must be a non-negative integer"));
  for (auto bad :
       {json{{"t_s", "forever"}}, json{{"t_s", 1.5}}, json{{"t_ms", 1}},
        json{{"t_s", 1}, {"x", 2}}, json(5), json("never"), json::object()})
    CHECK(mentions(refusal(parse_taler_timestamp(bad, "start")),
                   "start must be {\"t_s\": <seconds> or \"never\"}"));
  CHECK(mentions(
    refusal(parse_taler_timestamp(json{{"t_s", uint64_t{1} << 62}}, "start")),
    "too far"));
  CHECK(taler_timestamp(1718270343999) == json{{"t_s", 1718270343}});
  CHECK(taler_timestamp(taler_never_ms) == json{{"t_s", "never"}});
  CHECK(taler_timestamp(-1) == json{{"t_s", -1}});
}

TEST_CASE("taler: RelativeTime {\"d_us\":...} and \"forever\"") {
  CHECK(*parse_taler_duration(json{{"d_us", 3'600'000'000}}, "duration")
        == 3'600'000);
  // Rounded up: a duration never ends before the one asked for.
  CHECK(*parse_taler_duration(json{{"d_us", 1}}, "duration") == 1);
  CHECK(*parse_taler_duration(json{{"d_us", 0}}, "duration") == 0);
  CHECK(*parse_taler_duration(json{{"d_us", "forever"}}, "duration")
        == taler_never_ms);
  CHECK(mentions(refusal(parse_taler_duration(json{{"d_us", -5}}, "duration")),
                 "duration.d_us must be a non-negative integer"));
  for (auto bad : {json{{"d_us", "never"}}, json{{"d_ms", 5}},
                   json{{"d_us", "5"}}, json::array()})
    CHECK(mentions(refusal(parse_taler_duration(bad, "duration")),
                   "duration must be {\"d_us\": <microseconds> or "
                   "\"forever\"}"));
  CHECK(taler_duration(1500) == json{{"d_us", 1'500'000}});
  CHECK(taler_duration(taler_never_ms) == json{{"d_us", "forever"}});
}
