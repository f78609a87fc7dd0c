// The HTTP transport's pure rules: framing, targets, the per-peer count,
// the watchdog's choice of connections to cut, and the HTTP limit flags.

#include <Poco/Net/HTTPRequest.h>
#include <doctest/doctest.h>

#include "api/http_framing.hpp"
#include "api/http_guard.hpp"
#include "api/protocol.hpp"
#include "app/config.hpp"
#include "tests/unit/command_line.hpp"

using namespace tlm;
using tlm::test::parse;
using namespace std::chrono_literals;

namespace {

body_framing
framing(std::initializer_list<std::pair<const char*, const char*>> headers) {
  Poco::Net::HTTPRequest req;
  for (auto& [k, v] : headers)
    req.add(k, v);
  return read_framing(req);
}

int status(const body_framing& f) {
  return f.error ? f.error->status : 0;
}

} // namespace

TEST_CASE("HTTP versions: 1.0 and 1.1 served, other versions 505, junk 400") {
  CHECK(!check_version("HTTP/1.1"));
  CHECK(!check_version("HTTP/1.0"));
  CHECK(check_version("HTTP/9.9")->status == 505);
  CHECK(check_version("HTTP/2.0")->status == 505);
  CHECK(check_version("HTTP/1")->status == 400);
  CHECK(check_version("FOO")->status == 400);
}

TEST_CASE("Content-Length is read strictly") {
  CHECK(!framing({}).length);
  CHECK(*framing({{"Content-Length", "42"}}).length == 42);
  CHECK(*framing({{"content-length", "5"}, {"Content-Length", "5"}}).length
        == 5);
  CHECK(*framing({{"Content-Length", "5, 5"}}).length == 5);
  CHECK(*framing({{"Content-Length", "18446744073709551615"}}).length
        == UINT64_MAX);
  for (auto bad : {"abc", "18446744073709551616", "-5", "5x", "", "+5", "1 2"})
    CHECK_MESSAGE(status(framing({{"Content-Length", bad}})) == 400, bad);
  CHECK(status(framing({{"Content-Length", "5"}, {"Content-Length", "6"}}))
        == 400);
  CHECK(status(framing({{"Content-Length", "5, 6"}})) == 400);
}

TEST_CASE("Transfer-Encoding: only a single chunked, never with a length") {
  CHECK(framing({{"Transfer-Encoding", "chunked"}}).chunked);
  CHECK(framing({{"Transfer-Encoding", "Chunked"}}).chunked);
  CHECK(status(framing({{"Transfer-Encoding", "gzip"}})) == 501);
  CHECK(status(framing(
          {{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}))
        == 501);
  CHECK(
    status(framing({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}))
    == 400);
}

TEST_CASE("a target splits into decoded segments; %2F stays in its segment") {
  auto t = parse_target("/v1/leases/ab%2Fc?force=true&tag=a+b%21");
  REQUIRE(!t.error);
  CHECK(t.segments == std::vector<std::string>{"v1", "leases", "ab/c"});
  REQUIRE(t.query.size() == 2);
  CHECK(t.query[0] == std::pair<std::string, std::string>{"force", "true"});
  CHECK(t.query[1] == std::pair<std::string, std::string>{"tag", "a b!"});
  CHECK(parse_target("/").segments == std::vector<std::string>{""});
  CHECK(parse_target("http://host:1/healthz").segments
        == std::vector<std::string>{"healthz"});
  CHECK(parse_target("/v1/leases/").segments
        == std::vector<std::string>{"v1", "leases", ""});
}

TEST_CASE("a bad escape or a non-path target is an error") {
  for (auto bad : {"/v1/leases/%", "/v1/leases/%zz", "/a%4", "/a%00b",
                   "/v1/leases?tag=%g1", "*", "v1/leases", ""})
    CHECK_MESSAGE(parse_target(bad).error, bad);
}

TEST_CASE("peer_limiter counts per address and frees on release") {
  peer_limiter p{2};
  CHECK(p.try_acquire("10.0.0.1", 5));
  CHECK(p.try_acquire("10.0.0.1", 6));
  CHECK(!p.try_acquire("10.0.0.1", 7));
  CHECK(p.try_acquire("10.0.0.2", 8));
  CHECK(p.count("10.0.0.1") == 2);
  p.release(5);
  p.release(5); // twice: ignored
  CHECK(p.count("10.0.0.1") == 1);
  CHECK(p.try_acquire("10.0.0.1", 7));
  // a descriptor reused before its release does not count twice
  CHECK(p.try_acquire("10.0.0.2", 8));
  CHECK(p.count("10.0.0.2") == 1);
  p.release(6);
  p.release(7);
  p.release(8);
  CHECK(p.count("10.0.0.1") == 0);
  CHECK(p.count("10.0.0.2") == 0);
}

TEST_CASE("HTTP limit flags and config keys, with defaults in one place") {
  auto cmd = parse({});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.http.read_timeout_ms == http_limits{}.read_timeout_ms);
  CHECK(cmd.config.http.idle_timeout_ms == http_limits{}.idle_timeout_ms);
  CHECK(cmd.config.http.max_per_peer == http_limits{}.max_per_peer);
  cmd = parse({"--http-read-timeout-ms=700", "--http-idle-timeout-ms", "800",
               "--http-max-per-peer=3"});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.http.read_timeout_ms == 700);
  CHECK(cmd.config.http.idle_timeout_ms == 800);
  CHECK(cmd.config.http.max_per_peer == 3);
  for (auto bad : {"--http-read-timeout-ms=0", "--http-idle-timeout-ms=-1",
                   "--http-max-per-peer=0"})
    CHECK_MESSAGE(parse({bad}).exit_now, bad);
  auto help = parse({"--help"}).output;
  for (auto flag : {"--http-read-timeout-ms", "--http-idle-timeout-ms",
                    "--http-max-per-peer", "--http-threads"})
    CHECK(help.find(flag) != std::string::npos);
  CHECK(help.find("(default 5000)") != std::string::npos);
}

TEST_CASE("a NUL byte anywhere refuses the message") {
  using namespace std::string_literals;
  CHECK(parse_request("{\"action\":\"health\"}"s).error == caf::none);
  for (auto text :
       {"{\"action\":\"health\"}\0junk"s, "{\"action\":\"health\"}\0"s,
        "{\"action\":\"health\",\"request_id\":\"a\0b\"}"s})
    CHECK(parse_request(text).error == ec::invalid_request);
}
