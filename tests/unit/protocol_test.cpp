// The protocol's pure functions: every kind of bad input gets its clear
// failure, and replies render as the contract says.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "api/protocol.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

ec code(const api_request& req) {
  return req.error ? code_of(req.error) : ec::none;
}

std::string message(const api_request& req) {
  return message_of(req.error);
}

/// The command of a valid request, which must be a `Command`.
template <class Command>
const Command& command_of(const api_request& req) {
  REQUIRE(std::holds_alternative<Command>(req.cmd));
  return std::get<Command>(req.cmd);
}

const create_request& create_of(const api_request& req) {
  return command_of<create_cmd>(req).create;
}

const list_query& query_of(const api_request& req) {
  return command_of<list_cmd>(req).query;
}

} // namespace

TEST_CASE("invalid JSON is invalid_request") {
  auto req = parse_request("{\"action\":");
  CHECK(code(req) == ec::invalid_request);
  CHECK(message(req).find("JSON") != std::string::npos);
}

TEST_CASE("a message that is not an object is invalid_request") {
  for (auto text : {"[1,2]", "\"create\"", "42", "null"}) {
    CAPTURE(text);
    CHECK(code(parse_request(text)) == ec::invalid_request);
  }
}

TEST_CASE("an unknown or missing action is invalid_request") {
  auto req = parse_request(R"({"action":"explode","request_id":7})");
  CHECK(code(req) == ec::invalid_request);
  CHECK(message(req).find("explode") != std::string::npos);
  REQUIRE(req.request_id);
  CHECK(*req.request_id == 7);
  CHECK(code(parse_request(R"({"token_id":"x"})")) == ec::invalid_request);
  CHECK(code(parse_request(R"({"action":5})")) == ec::invalid_request);
}

TEST_CASE("wrong field types are invalid_request naming the field") {
  struct bad_case {
    const char* text;
    const char* field;
  };
  bad_case cases[] = {
    {R"({"action":"create","options":{"ttl":"60000"}})", "ttl"},
    {R"({"action":"create","options":{"ttl":1.5}})", "ttl"},
    {R"({"action":"create","options":[]})", "options"},
    {R"({"action":"create","tags":"t"})", "tags"},
    {R"({"action":"create","tags":[1]})", "tags"},
    {R"({"action":"create","meta":[]})", "meta"},
    {R"({"action":"create","renewable":"yes"})", "renewable"},
    {R"({"action":"create","description":3})", "description"},
    {R"({"action":"create","backend":{}})", "backend"},
    {R"({"action":"get","token_id":12})", "token_id"},
    {R"({"action":"get"})", "token_id"},
    {R"({"action":"renew","token_id":"x","ttl":"1"})", "ttl"},
    {R"({"action":"list","limit":"5"})", "limit"},
    {R"({"action":"list","cursor":5})", "cursor"},
    {R"({"action":"list","state":"pending"})", "state"},
    {R"({"action":"create","ttl":"60000"})", "ttl"},
    {R"({"action":"create","role":7})", "role"},
    {R"({"action":"list","state":1})", "state"},
    {R"({"action":"revoke_prefix"})", "backend"},
    {R"({"action":"revoke_prefix","tag":[]})", "tag"},
    {R"({"action":"job"})", "job_id"},
    {R"({"action":"exchange"})", "token"},
    {R"({"action":"exchange","token":"t","meta":"m"})", "meta"},
    {R"({"action":"health","request_id":{}})", "request_id"},
  };
  for (auto& c : cases) {
    CAPTURE(c.text);
    auto req = parse_request(c.text);
    CHECK(code(req) == ec::invalid_request);
    CHECK(message(req).find(c.field) != std::string::npos);
  }
}

TEST_CASE("negative and zero ttls are invalid_request") {
  for (auto text :
       {R"({"action":"create","options":{"ttl":-5}})",
        R"({"action":"create","options":{"ttl":0}})",
        R"({"action":"renew","token_id":"x","ttl":-1})",
        R"({"action":"create","options":{"ttl":18446744073709551615}})"}) {
    CAPTURE(text);
    CHECK(code(parse_request(text)) == ec::invalid_request);
  }
}

TEST_CASE("metadata over 64 KiB is invalid_request") {
  json msg{{"action", "create"},
           {"meta", {{"x", std::string(max_client_data_bytes, 'a')}}}};
  auto req = parse_request(msg.dump());
  CHECK(code(req) == ec::invalid_request);
  CHECK(message(req).find("65536") != std::string::npos);
  msg["meta"] = {{"x", std::string(1000, 'a')}};
  CHECK(code(parse_request(msg.dump())) == ec::none);
}

TEST_CASE("create reads every field; options keep backend keys only") {
  auto req = parse_request(
    R"({"action":"create","backend":"b","options":{"ttl":5000,"db":"x"},
        "renewable":true,"tags":["t"],"meta":{"k":1},"description":"d",
        "request_id":"r1"})");
  REQUIRE(code(req) == ec::none);
  CHECK(std::holds_alternative<create_cmd>(req.cmd));
  CHECK(create_of(req).backend == "b");
  CHECK(create_of(req).ttl_ms == 5000);
  CHECK(json::parse(create_of(req).options) == json{{"db", "x"}});
  CHECK(create_of(req).renewable);
  CHECK(create_of(req).tags == std::vector<std::string>{"t"});
  CHECK(json::parse(create_of(req).meta) == json{{"k", 1}});
  CHECK(*req.request_id == "r1");
  auto bare = parse_request(R"({"action":"create"})");
  CHECK(create_of(bare).ttl_ms == use_default_ttl);
}

TEST_CASE("lease_id is an alias of token_id") {
  auto req = parse_request(R"({"action":"revoke","lease_id":"abc"})");
  REQUIRE(code(req) == ec::none);
  CHECK(command_of<revoke_cmd>(req).lease_id == "abc");
  CHECK(!command_of<revoke_cmd>(req).force);
  CHECK(command_of<revoke_cmd>(
          parse_request(R"({"action":"revoke","lease_id":"a","force":true})"))
          .force);
  CHECK(code(parse_request(R"({"action":"revoke","lease_id":"a","force":1})"))
        == ec::invalid_request);
}

TEST_CASE("list filters by state; revoke_prefix and job read their fields") {
  CHECK(
    query_of(parse_request(R"({"action":"list","state":"irrevocable"})")).state
    == list_state::irrevocable);
  CHECK(query_of(parse_request(R"({"action":"list"})")).state
        == list_state::visible);
  auto bulk = parse_request(R"({"action":"revoke_prefix","tag":"ci"})");
  CHECK(std::holds_alternative<revoke_prefix_cmd>(bulk.cmd));
  CHECK(command_of<revoke_prefix_cmd>(bulk).tag == "ci");
  CHECK(command_of<revoke_prefix_cmd>(bulk).backend.empty());
  auto job = parse_request(R"({"action":"job","job_id":"abc"})");
  CHECK(std::holds_alternative<job_cmd>(job.cmd));
  CHECK(command_of<job_cmd>(job).job_id == "abc");
}

TEST_CASE("list limits: capped at 1000, at least 1; cursors round-trip") {
  CHECK(query_of(parse_request(R"({"action":"list"})")).limit == 100);
  CHECK(query_of(parse_request(R"({"action":"list","limit":5000})")).limit
        == 1000);
  CHECK(code(parse_request(R"({"action":"list","limit":0})"))
        == ec::invalid_request);
  CHECK(code(parse_request(R"({"action":"list","limit":-3})"))
        == ec::invalid_request);
  auto cursor = encode_cursor("abc_DEF-123");
  auto req = parse_request(json{{"action", "list"}, {"cursor", cursor}}.dump());
  CHECK(query_of(req).after == "abc_DEF-123");
  CHECK(code(parse_request(R"({"action":"list","cursor":"!!!"})"))
        == ec::invalid_request);
}

TEST_CASE("replies echo request ids and carry codes and sentences") {
  auto req = parse_request(R"({"action":"health","request_id":42})");
  auto ok = json::parse(render_success(req.request_id, {{"status", "ok"}}));
  CHECK(ok["result"] == "success");
  CHECK(ok["request_id"] == 42);
  auto fail = json::parse(
    render_failure(json("x"), make_error(ec::not_found, "gone")));
  CHECK(fail
        == json{{"result", "failure"},
                {"error", "not_found"},
                {"message", "gone"},
                {"request_id", "x"}});
}

TEST_CASE("leases render with RFC 3339 times; list hides the value") {
  lease x;
  x.id = "id";
  x.value = "secret";
  x.issued_ms = 1795442632123;
  x.expires_ms = 1795442692123;
  auto j = to_json(x);
  CHECK(j["issued"] == "2026-11-23T14:03:52.123Z");
  CHECK(j["expires"] == "2026-11-23T14:04:52.123Z");
  CHECK(j["value"] == "secret");
  CHECK(!to_json(x, false).contains("value"));
  CHECK(rfc3339(0) == "1970-01-01T00:00:00.000Z");
  CHECK(rfc3339(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(rfc3339(253402300799999) == "9999-12-31T23:59:59.999Z");
  // Every lease shows its scope and last access (null: never).
  CHECK(j["scope"] == "");
  CHECK(j["last_access"].is_null());
  x.scope = "readonly";
  x.last_access_ms = 1795442642123;
  CHECK(to_json(x)["scope"] == "readonly");
  CHECK(to_json(x, false)["last_access"] == "2026-11-23T14:04:02.123Z");
}

TEST_CASE("create takes a scope of at most 128 bytes") {
  auto req = parse_request(R"({"action":"create","scope":"readwrite"})");
  REQUIRE(!req.error);
  CHECK(create_of(req).scope == "readwrite");
  CHECK(code(parse_request(R"({"action":"create","scope":7})"))
        == ec::invalid_request);
  auto long_scope = parse_request(R"({"action":"create","scope":")"
                                  + std::string(129, 's') + R"("})");
  CHECK(message(long_scope).find("scope must be at most 128 bytes")
        != std::string::npos);
}

TEST_CASE("every code has its HTTP status") {
  CHECK(http_status(ec::none) == 200);
  CHECK(http_status(ec::invalid_request) == 400);
  CHECK(http_status(ec::not_renewable) == 400);
  CHECK(http_status(ec::unknown_backend) == 400);
  CHECK(http_status(ec::unauthorized) == 401);
  CHECK(http_status(ec::not_found) == 404);
  CHECK(http_status(ec::invalid_token) == 404);
  CHECK(http_status(ec::too_large) == 413);
  CHECK(http_status(ec::overloaded) == 503);
  CHECK(http_status(ec::backend_unavailable) == 503);
  CHECK(http_status(ec::storage_error) == 503);
  CHECK(http_status(ec::backend_error) == 502);
  CHECK(http_status(ec::internal) == 500);
  CHECK(http_status(ec::revocation_pending) == 202);
}

TEST_CASE("unknown fields are refused naming the field, for every action") {
  for (auto text : {R"({"action":"create","bogus":1})",
                    R"({"action":"get","token_id":"x","bogus":1})",
                    R"({"action":"revoke","token_id":"x","bogus":1})",
                    R"({"action":"renew","token_id":"x","bogus":1})",
                    R"({"action":"list","bogus":1})",
                    R"({"action":"exchange","token":"t","bogus":1})",
                    R"({"action":"health","bogus":1})",
                    R"({"action":"auth","api_key":"k","bogus":1})",
                    R"({"action":"revoke_prefix","tag":"t","bogus":1})",
                    R"({"action":"job","job_id":"j","bogus":1})"}) {
    CAPTURE(text);
    auto req = parse_request(text);
    CHECK(code(req) == ec::invalid_request);
    CHECK(message(req).find("'bogus'") != std::string::npos);
  }
  // A null counts as given: it is still a field we do not know.
  CHECK(code(parse_request(R"({"action":"get","token_id":"x","b":null})"))
        == ec::invalid_request);
}

TEST_CASE("description and tags are bounded, and so is a lease's client data "
          "in all") {
  auto refused = [](json msg, const char* words) {
    msg["action"] = "create";
    auto req = parse_request(msg.dump());
    CHECK(code(req) == ec::invalid_request);
    CHECK(message(req).find(words) != std::string::npos);
  };
  refused({{"description", std::string(1025, 'd')}}, "description");
  refused({{"tags", std::vector<std::string>(65, "t")}}, "64 tags");
  refused({{"tags", {std::string(129, 't')}}}, "tag");
  refused({{"tags", {""}}}, "tag");
  refused({{"meta", {{"x", std::string(60'000, 'm')}}},
           {"description", std::string(1024, 'd')},
           {"tags", std::vector<std::string>(64, std::string(128, 't'))}},
          "together");
  json fits{{"action", "create"},
            {"description", std::string(1024, 'd')},
            {"tags", std::vector<std::string>(64, std::string(128, 't'))},
            {"meta", {{"x", std::string(50'000, 'm')}}}};
  CHECK(code(parse_request(fits.dump())) == ec::none);
}

TEST_CASE("create takes ttl and role at the top level or in options") {
  auto req = parse_request(R"({"action":"create","ttl":60000})");
  CHECK(code(req) == ec::none);
  CHECK(create_of(req).ttl_ms == 60'000);
  req = parse_request(
    R"({"action":"create","ttl":5000,"options":{"ttl":5000}})");
  CHECK(code(req) == ec::none);
  CHECK(create_of(req).ttl_ms == 5'000);
  req = parse_request(
    R"({"action":"create","ttl":6000,"options":{"ttl":5000}})");
  CHECK(code(req) == ec::invalid_request);
  CHECK(message(req).find("options.ttl") != std::string::npos);
  req = parse_request(R"({"action":"create","role":"reader"})");
  CHECK(code(req) == ec::none);
  CHECK(json::parse(create_of(req).options) == json{{"role", "reader"}});
  req = parse_request(
    R"({"action":"create","role":"reader","options":{"db":"x"}})");
  CHECK(json::parse(create_of(req).options)
        == json{{"role", "reader"}, {"db", "x"}});
  req = parse_request(
    R"({"action":"create","role":"a","options":{"role":"b"}})");
  CHECK(code(req) == ec::invalid_request);
  CHECK(code(parse_request(R"({"action":"create","role":""})"))
        == ec::invalid_request);
}

TEST_CASE("a pending revocation renders as accepted, not as a failure") {
  auto text = render_failure(
    json(3), make_error(ec::revocation_pending, "lease 'x' is dead"));
  auto j = json::parse(text);
  CHECK(j["result"] == "accepted");
  CHECK(j["outcome"] == "revocation_pending");
  CHECK(!j.contains("error"));
  CHECK(j["request_id"] == 3);
}

TEST_CASE("health is degraded when anything needs an operator") {
  health_report h;
  h.live = 3;
  h.backends.push_back({"local", 0, 0, 0, ""});
  CHECK(to_json(h)["status"] == "ok");
  CHECK(to_json(h)["backends"]["local"]["status"] == "ok");
  h.backends.push_back({"influx", 2, 0, 5, "connection refused"});
  auto j = to_json(h);
  CHECK(j["status"] == "degraded");
  CHECK(j["backends"]["influx"]["status"] == "failing");
  CHECK(j["backends"]["influx"]["retrying"] == 2);
  CHECK(j["backends"]["influx"]["failed_attempts"] == 5);
  CHECK(j["backends"]["influx"]["last_error"] == "connection refused");
  h.backends.pop_back();
  h.quarantined = 1;
  CHECK(to_json(h)["status"] == "degraded");
}

TEST_CASE("a capped renewal says so") {
  lease x;
  x.id = "id";
  api_request req;
  CHECK(!json::parse(render_lease(req.request_id, x)).contains("capped"));
  CHECK(json::parse(render_lease(req.request_id, x, true))["capped"] == true);
}

TEST_CASE("deeply nested messages are refused before parsing") {
  std::string deep = R"({"action":"create","meta":{"a":)"
                     + std::string(100'000, '[') + std::string(100'000, ']')
                     + "}}";
  auto req = parse_request(deep);
  CHECK(code(req) == ec::invalid_request);
  CHECK(message(req).find("nests") != std::string::npos);
  // Brackets inside strings do not count.
  json msg{{"action", "create"}, {"description", std::string(1000, '[')}};
  CHECK(code(parse_request(msg.dump())) == ec::none);
}

TEST_CASE("the direct lease writer agrees with the JSON library") {
  lease x;
  x.id = "id";
  x.backend = "local";
  x.backend_id = "bid";
  x.value = "secret";
  x.ttl_ms = 1234;
  x.issued_ms = 1795442632123;
  x.expires_ms = 1795442633357;
  x.renewable = true;
  x.tags = {"a\"b", "c\\d", std::string("e\x01", 2)};
  x.meta = json{{"k", {1, "é", nullptr}}}.dump();
  x.description = "line\nbreak \u00fc";
  x.state = state_irrevocable;
  x.last_error = "backend said \"no\"";
  auto req = parse_request(
    R"({"action":"get","token_id":"id","request_id":[1]})");
  req.request_id = json{{"nested", 1}};
  // An irrevocable lease is dead: its value, still valid at the backend,
  // is not handed out again; the get path blanks it before rendering.
  auto dead = x;
  dead.value.clear();
  auto text = render_lease(req.request_id, dead);
  auto parsed = json::parse(text);
  CHECK(parsed["result"] == "success");
  CHECK(parsed["request_id"] == json{{"nested", 1}});
  CHECK(parsed["lease"] == to_json(x, false));
  CHECK(parsed["lease"]["state"] == "irrevocable");
  CHECK(parsed["lease"]["last_error"] == "backend said \"no\"");
  x.state = state_active;
  x.last_error.clear();
  auto active = json::parse(render_lease(req.request_id, x));
  CHECK(active["lease"] == to_json(x));
  CHECK(active["lease"]["value"] == "secret");
  x.state = state_irrevocable;
  x.last_error = "backend said \"no\"";
  lease_page page{{x, x}, "next"};
  auto listed = json::parse(render_page(req.request_id, page));
  CHECK(listed["leases"].size() == 2);
  CHECK(listed["leases"][0] == to_json(x, false));
  CHECK(listed["next_cursor"] == encode_cursor("next"));
  CHECK(json::parse(render_page(req.request_id, lease_page{}))["next_cursor"]
          .is_null());
}

TEST_CASE("a lease shows its value whenever it has one, never in a list") {
  lease x;
  x.id = "id";
  x.value = "secret";
  // The renderer does not judge the state: the one who hands it a lease
  // decides what the client may see.
  for (auto state : {state_active, state_irrevocable, state_revoking}) {
    CAPTURE(state);
    x.state = state;
    auto shown = json::parse(render_lease(std::nullopt, x))["lease"];
    CHECK(shown["value"] == "secret");
    CHECK(shown == to_json(x));
    auto listed = json::parse(render_page(std::nullopt, lease_page{{x}, {}}));
    CHECK(!listed["leases"][0].contains("value"));
  }
  x.value.clear();
  CHECK(!json::parse(render_lease(std::nullopt, x))["lease"].contains("value"));
  CHECK(!to_json(x).contains("value"));
}

namespace {

/// Every kind of ill-formed UTF-8, next to well-formed text.
const std::string bad_utf8[] = {
  "\xC3",         // a 2-byte character cut at the end
  "a\xE2\x82",    // a 3-byte character cut at the end
  "\xF0\x9F\x98", // a 4-byte character cut at the end
  "\xE2\x82"
  "b", // ... cut in the middle of the text
  "\xF0\x9F"
  "\xC3\xA9",         // ... followed by a whole character
  "\xC0\xAF",         // overlong 2-byte ('/')
  "\xC1\xBF",         // overlong 2-byte
  "\xE0\x80\xAF",     // overlong 3-byte
  "\xF0\x80\x80\xAF", // overlong 4-byte
  "\x80",             // a lone continuation byte
  "a\xBF\x80"
  "b",                        // two of them
  "\xED\xA0\x80",             // a high surrogate (U+D800)
  "\xED\xBF\xBF",             // a low surrogate (U+DFFF)
  "\xED\xA0\xBD\xED\xB8\x80", // a surrogate pair, CESU-8 style
  "\xF4\x90\x80\x80",         // above U+10FFFF
  "\xF5\x80\x80\x80",         // a lead byte that never starts one
  "\xFE\xFF",                 // bytes that never occur
  "quote\" \x01 \xC3",        // escapes next to a bad byte
};

} // namespace

TEST_CASE("a lease whose texts hold bad UTF-8 still renders as valid JSON") {
  for (auto& bad : bad_utf8) {
    CAPTURE(bad);
    lease x;
    x.id = "id";
    x.value = "v";
    x.backend_id = bad;
    x.description = "d " + bad;
    x.last_error = bad + " (from the backend)";
    x.tags = {bad};
    std::string text;
    CHECK_NOTHROW(text = render_lease(std::nullopt, x));
    auto parsed = json::parse(text, nullptr, false);
    REQUIRE(!parsed.is_discarded());
    // The same text as the JSON library makes of it with `replace`.
    auto replaced = [](const std::string& s) {
      return json::parse(
        json(s).dump(-1, ' ', false, json::error_handler_t::replace));
    };
    CHECK(parsed["lease"]["description"] == replaced(x.description));
    CHECK(parsed["lease"]["last_error"] == replaced(x.last_error));
    CHECK(parsed["lease"]["backend_id"] == replaced(bad));
    CHECK(parsed["lease"]["tags"][0] == replaced(bad));
    auto listed = json::parse(render_page(std::nullopt, lease_page{{x}, {}}),
                              nullptr, false);
    CHECK(!listed.is_discarded());
  }
}

TEST_CASE("the JSON string writer replaces bad UTF-8 as the JSON library "
          "does") {
  auto replaced = [](const std::string& s) {
    return json::parse(
      json(s).dump(-1, ' ', false, json::error_handler_t::replace));
  };
  for (auto& bad : bad_utf8) {
    CAPTURE(bad);
    std::string out;
    append_json_string(out, bad);
    auto parsed = json::parse(out, nullptr, false);
    REQUIRE(!parsed.is_discarded());
    CHECK(parsed == replaced(bad));
    CHECK(parsed.get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
  }
  // One U+FFFD per maximal ill-formed part: a cut character is one, a
  // surrogate is three (no valid part of it starts a character).
  auto count = [](const std::string& bad) {
    std::string out;
    append_json_string(out, bad);
    auto text = json::parse(out).get<std::string>();
    size_t n = 0;
    for (auto i = text.find("\xEF\xBF\xBD"); i != std::string::npos;
         i = text.find("\xEF\xBF\xBD", i + 3))
      ++n;
    return n;
  };
  CHECK(count("a\xE2\x82"
              "b")
        == 1);
  CHECK(count("\xED\xA0\x80") == 3);
  CHECK(count("\xF0\x80\x80\xAF") == 4);
  // Well-formed text, of 1 to 4 bytes a character, passes unchanged.
  std::string good = "plain ASCII, \xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80, "
                     "\xF4\x8F\xBF\xBF, \xEE\x80\x80";
  std::string out;
  append_json_string(out, good);
  CHECK(out == "\"" + good + "\"");
  out.clear();
  append_json_string(out, std::string("q\"b\\c\n\x1f", 7));
  CHECK(json::parse(out) == std::string("q\"b\\c\n\x1f", 7));
}
