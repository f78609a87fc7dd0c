// token_server's REST bodies and replies (issue 15): pure functions, no
// sockets. The routes themselves run in test_token_server_api.py.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "api/token_server_api.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

std::string problem(const api_request& req) {
  REQUIRE(req.error);
  CHECK(code_of(req.error) == ec::invalid_request);
  return message_of(req.error);
}

bool mentions(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("token_server: POST token is a create of a local lease") {
  // The documentation's own example.
  auto req = parse_token_create(
    R"({"meta":{"name":"My user","year":2022,"period":11}})", 7'200'000);
  REQUIRE(!req.error);
  auto& c = std::get<create_cmd>(req.cmd).create;
  CHECK(c.backend == "local");
  CHECK(c.ttl_ms == 7'200'000);
  CHECK(c.tags == std::vector<std::string>{"token_server"});
  CHECK(json::parse(c.meta)
        == json{{"name", "My user"}, {"year", 2022}, {"period", 11}});
  CHECK(mentions(problem(parse_token_create("{}", 1)), "meta"));
  CHECK(mentions(problem(parse_token_create(R"({"meta":[1]})", 1)), "meta"));
  CHECK(mentions(problem(parse_token_create(R"({"meta":{},"ttl":5})", 1)),
                 "unknown field 'ttl'"));
  CHECK(mentions(problem(parse_token_create("[1]", 1)), "JSON object"));
  CHECK(mentions(problem(parse_token_create("{", 1)), "not valid JSON"));
}

TEST_CASE("token_server: PUT token is an exchange merging meta") {
  auto req = parse_token_update(R"({"token":"abc.def","meta":{"year":2023}})");
  REQUIRE(!req.error);
  auto& x = std::get<exchange_cmd>(req.cmd);
  CHECK(x.token == "abc.def");
  CHECK(x.backend == "local");
  CHECK(json::parse(x.meta) == json{{"year", 2023}});
  for (auto body : {R"({"token":"abc.def"})", R"({"token":"t","meta":null})"}) {
    auto plain = parse_token_update(body);
    REQUIRE(!plain.error);
    CHECK(std::get<exchange_cmd>(plain.cmd).meta == "{}");
  }
  CHECK(mentions(problem(parse_token_update(R"({"meta":{}})")), "token"));
  CHECK(mentions(problem(parse_token_update(R"({"token":""})")), "token"));
  CHECK(mentions(problem(parse_token_update(R"({"token":7})")), "token"));
  CHECK(
    mentions(problem(parse_token_update(R"({"token":"t","meta":3})")), "meta"));
  CHECK(mentions(problem(parse_token_update(R"({"token":"t","x":1})")),
                 "unknown field 'x'"));
}

TEST_CASE("token_server: DELETE token names the token") {
  auto token = parse_token_remove(R"({"token":"abc.def"})");
  REQUIRE(token);
  CHECK(*token == "abc.def");
  CHECK(!parse_token_remove("{}"));
  CHECK(!parse_token_remove(R"({"token":"t","meta":{}})"));
  CHECK(lease_id_of_token("Gk3Nq2m0TqWb9yX1c4Zr8A.0S2p")
        == "Gk3Nq2m0TqWb9yX1c4Zr8A");
  CHECK(lease_id_of_token("no-dot").empty());
}

TEST_CASE("token_server: replies as its documentation shows them") {
  json lease{{"id", "i"},
             {"value", "XXXX"},
             {"expires", "2026-11-23T14:04:52.123Z"},
             {"meta", {{"name", "My user"}, {"year", 2022}, {"period", 11}}}};
  CHECK(render_token_ok(lease)
        == R"({"Ok":{"token":"XXXX","meta":{"name":"My user","period":11,)"
           R"("year":2022}}})");
  CHECK(std::string{token_invalid_reply} == R"({"Err":"InvalidToken"})");
  auto line = token_dump_line(lease);
  CHECK(line
        == R"({"expires":"2026-11-23T14:04:52.123Z","meta":{"name":"My user",)"
           R"("period":11,"year":2022}})");
  CHECK(!mentions(line, "XXXX"));
}
