#include <doctest/doctest.h>

#include "wire.hpp"

using namespace tlm;
using wire::json;

TEST_SUITE_BEGIN("wire");

TEST_CASE("times go to RFC 3339 with milliseconds and back") {
  auto t = wire::parse_time("2026-11-23T14:03:52.123Z");
  REQUIRE(t);
  CHECK(wire::format_time(t.value()) == "2026-11-23T14:03:52.123Z");
  CHECK_FALSE(wire::parse_time("2026-11-23 14:03:52"));
  CHECK(wire::parse_time("yesterday").error().code == errc::bad_reply);
}

TEST_CASE("a lease reply becomes a lease, with its value") {
  auto r = wire::parse_reply(
    R"({"result":"success","lease":{"id":"abc","backend":"local",)"
    R"("backend_id":"abc","value":"abc.x","ttl":60000,)"
    R"("issued":"2026-11-23T14:03:52.123Z","expires":"2026-11-23T14:04:52.123Z",)"
    R"("renewable":true,"tags":["t"],"meta":{"k":1},"description":"d","state":"active"}})");
  auto x = wire::lease_reply(r);
  REQUIRE(x);
  CHECK(x->id == "abc");
  CHECK(x->value == "abc.x");
  CHECK(x->ttl_ms == 60000);
  CHECK(x->expires - x->issued == std::chrono::seconds{60});
  CHECK(x->tags == std::vector<std::string>{"t"});
  CHECK(json::parse(x->meta) == json{{"k", 1}});
  // And back: the cache file's form reads as the same lease.
  auto again = wire::lease_from_json(wire::lease_to_json(x.value()));
  REQUIRE(again);
  CHECK(again->value == x->value);
  CHECK(again->expires == x->expires);
}

TEST_CASE("a failure reply carries its code and message") {
  auto x = wire::lease_reply(wire::parse_reply(
    R"({"result":"failure","error":"not_found","message":"no live lease"})"));
  REQUIRE_FALSE(x);
  CHECK(x.error().code == errc::not_found);
  CHECK(x.error().message == "no live lease");
}

TEST_CASE("an accepted revoke is not confirmed, and not a failure") {
  auto r = wire::revoke_reply(wire::parse_reply(
    R"({"result":"accepted","outcome":"revocation_pending","message":"is dead"})"));
  REQUIRE(r);
  CHECK_FALSE(r->confirmed);
  CHECK(r->message == "is dead");
}

TEST_CASE("a renew reply says when the cap cut the term") {
  auto r = wire::renewal_reply(wire::parse_reply(
    R"({"result":"success","capped":true,"lease":{"id":"a","ttl":5,)"
    R"("issued":"2026-11-23T14:03:52.123Z","expires":"2026-11-23T14:04:52.123Z"}})"));
  REQUIRE(r);
  CHECK(r->capped);
}

TEST_CASE("the last page has no cursor") {
  auto p = wire::page_reply(wire::parse_reply(
    R"({"result":"success","leases":[],"next_cursor":null})"));
  REQUIRE(p);
  CHECK(p->next_cursor.empty());
}

TEST_CASE("replies that are not the protocol are bad_reply") {
  CHECK(wire::parse_reply("<html>").error().code == errc::bad_reply);
  CHECK(
    wire::lease_reply(wire::parse_reply(R"({"result":"success"})")).error().code
    == errc::bad_reply);
  CHECK(wire::lease_reply(wire::parse_reply(R"({"lease":{}})")).error().code
        == errc::bad_reply);
}

TEST_CASE("a create leaves out what is unset and refuses bad options") {
  create_request req;
  auto msg = wire::create_message(req);
  REQUIRE(msg);
  CHECK(msg.value() == json{{"action", "create"}});
  req.ttl_ms = 5000;
  req.renewable = true;
  req.options = R"({"database":"db"})";
  msg = wire::create_message(req);
  REQUIRE(msg);
  CHECK(msg.value()["ttl"] == 5000);
  CHECK(msg.value()["options"]["database"] == "db");
  req.options = "[1]";
  auto bad = wire::create_message(req);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("options") != std::string::npos);
}

TEST_SUITE_END();
