// The pure parts of the TCP hardening (issue 9): reading a message's
// envelope without a document, and the TCP limits in the config.

#include <doctest/doctest.h>

#include "api/envelope.hpp"
#include "app/config.hpp"
#include "core/error.hpp"
#include "tests/unit/command_line.hpp"

using namespace tlm;
using tlm::test::parse;
using json = nlohmann::json;

TEST_CASE("peek_envelope finds the top-level action and request id") {
  auto e = peek_envelope(R"({"meta":{"action":"x","request_id":1},)"
                         R"("action":"auth","request_id":"r7","api_key":"k"})");
  CHECK(e.valid);
  CHECK(e.action == "auth");
  REQUIRE(e.request_id);
  CHECK(*e.request_id == "r7");
  e = peek_envelope(R"({"request_id":42,"action":"get","tags":[["auth"]]})");
  CHECK(e.action == "get");
  CHECK(*e.request_id == 42);
}

TEST_CASE("peek_envelope ignores what parse_request would refuse") {
  CHECK_FALSE(peek_envelope("not json").valid);
  CHECK_FALSE(peek_envelope("[1,2]").valid);
  CHECK_FALSE(peek_envelope(R"({"action":"auth"} trailing)").valid);
  CHECK_FALSE(peek_envelope(std::string(100, '[')).valid);
  auto e = peek_envelope(R"({"action":["auth"],"request_id":true})");
  CHECK(e.valid);
  CHECK(e.action.empty());
  CHECK_FALSE(e.request_id);
  e = peek_envelope(R"({"request_id":{"a":1}})");
  CHECK_FALSE(e.request_id);
}

TEST_CASE("TCP limits: defaults, flags and config keys") {
  auto cmd = parse({});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.tcp.idle_timeout_ms == 300'000);
  CHECK(cmd.config.tcp.auth_timeout_ms == 5'000);
  CHECK(cmd.config.tcp.reply_bytes_per_connection == 8 * 1024 * 1024);
  CHECK(cmd.config.tcp.reply_bytes_total == 256 * 1024 * 1024);
  cmd = parse({"--tcp-idle-timeout-ms", "0", "--tcp-auth-timeout-ms=250",
               "--tcp-reply-buffer-bytes", "65536",
               "--tcp-reply-buffer-total-bytes", "1048576"});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.tcp.idle_timeout_ms == 0);
  CHECK(cmd.config.tcp.auth_timeout_ms == 250);
  CHECK(cmd.config.tcp.reply_bytes_per_connection == 65536);
  CHECK(cmd.config.tcp.reply_bytes_total == 1048576);
}

TEST_CASE("TCP limits: bad values are refused with the key to fix") {
  auto refused = [](std::vector<std::string> args, const char* key) {
    auto cmd = parse(std::move(args));
    CHECK(cmd.exit_now);
    CHECK(cmd.exit_code == 2);
    CHECK(cmd.output.find(key) != std::string::npos);
  };
  refused({"--tcp-idle-timeout-ms", "-1"}, "tcp_idle_timeout_ms");
  refused({"--tcp-auth-timeout-ms", "0"}, "tcp_auth_timeout_ms");
  refused({"--tcp-reply-buffer-bytes", "10"}, "tcp_reply_buffer_bytes");
  refused({"--tcp-reply-buffer-bytes", "2000000",
           "--tcp-reply-buffer-total-bytes", "1000000"},
          "tcp_reply_buffer_total_bytes");
}
