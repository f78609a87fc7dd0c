// Taler's token API shapes (design document 049): request bodies, the
// tokens query and the reply shapes, as pure functions (issue 15).

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "api/taler_api.hpp"
#include "api/taler_time.hpp"
#include "core/error.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

template <class T>
std::string refusal(const caf::expected<T>& x) {
  REQUIRE(!x);
  CHECK(code_of(x.error()) == ec::invalid_request);
  return message_of(x.error());
}

bool mentions(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

using query = std::vector<std::pair<std::string, std::string>>;

} // namespace

TEST_CASE("taler: a TokenRequest as the document defines it") {
  auto req = parse_taler_token_request(
    R"({"scope":"readwrite","duration":{"d_us":3600000000},)"
    R"("refreshable":true,"description":"CI pipeline"})");
  REQUIRE(req);
  CHECK(req->scope == "readwrite");
  CHECK(req->duration_ms == 3'600'000);
  CHECK(req->refreshable);
  CHECK(req->description == "CI pipeline");
  auto plain = parse_taler_token_request(R"({"scope":"readonly"})");
  REQUIRE(plain);
  CHECK(!plain->duration_ms);
  CHECK(!plain->refreshable);
  auto forever = parse_taler_token_request(
    R"({"scope":"readonly","duration":{"d_us":"forever"}})");
  REQUIRE(forever);
  CHECK(*forever->duration_ms == taler_never_ms);
  CHECK(mentions(refusal(parse_taler_token_request("{}")), "scope"));
  CHECK(
    mentions(refusal(parse_taler_token_request(R"({"scope":""})")), "scope"));
  CHECK(mentions(refusal(parse_taler_token_request(
                   R"({"scope":"readonly","duration":3600})")),
                 "duration must be {\"d_us\""));
  CHECK(mentions(refusal(parse_taler_token_request(
                   R"({"scope":"readonly","refreshable":"yes"})")),
                 "refreshable"));
  CHECK(mentions(
    refusal(parse_taler_token_request(R"({"scope":"readonly","ttl":5})")),
    "unknown field 'ttl'"));
}

TEST_CASE("taler: the server bounds the duration by its ttl bounds") {
  taler_token_request req;
  CHECK(taler_token_ttl(req, 3'600'000, 1000, 7'200'000) == 3'600'000);
  req.duration_ms = taler_never_ms;
  CHECK(taler_token_ttl(req, 3'600'000, 1000, 7'200'000) == 7'200'000);
  req.duration_ms = 0;
  CHECK(taler_token_ttl(req, 3'600'000, 1000, 7'200'000) == 1000);
}

TEST_CASE("taler: GET tokens takes delta and start") {
  auto page = parse_taler_page({});
  REQUIRE(page);
  CHECK(page->delta == -20); // the document's default: the last 20
  CHECK(!page->start);
  page = parse_taler_page(query{{"delta", "5"}, {"start", "42"}});
  REQUIRE(page);
  CHECK(page->delta == 5);
  CHECK(page->start == 42);
  CHECK(mentions(refusal(parse_taler_page(query{{"delta", "0"}})), "delta"));
  CHECK(mentions(refusal(parse_taler_page(query{{"delta", "x"}})), "delta"));
  CHECK(
    mentions(refusal(parse_taler_page(query{{"delta", "-1001"}})), "delta"));
  CHECK(mentions(refusal(parse_taler_page(query{{"start", "-1"}})), "start"));
  CHECK(mentions(refusal(parse_taler_page(query{{"limit", "5"}})),
                 "unknown query parameter 'limit'"));
}

TEST_CASE("taler: TokenSuccessResponse and TokenInfo shapes") {
  CHECK(taler_token_success("secret", 1'718'270'343'999)
        == json::parse(R"({"access_token":"secret",)"
                       R"("expiration":{"t_s":1718270343}})"));
  taler_token_info info{1'000'000, 4'600'000, "readonly", true, "", 2'500, 7};
  auto shown = to_json(info);
  CHECK(shown == json::parse(R"({"creation_time":{"t_s":1000},
                           "expiration":{"t_s":4600},"scope":"readonly",
                           "refreshable":true,"last_access":{"t_s":2},
                           "row_id":7})"));
  info.description = "CI";
  CHECK(to_json(info)["description"] == "CI");
}
