// The incremental HTTP request parser: whole requests out of bytes that
// arrive in pieces, with the blocking server's refusals.

#include <cstdio>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "api/http_parser.hpp"
#include "api/protocol.hpp"

using namespace tlm;
using kind = http_parse_result::kind;

namespace {

/// A connection's bytes and its parser, as an event loop would hold them.
struct connection {
  http_request_parser parser;
  std::string buffer;
  int continues = 0;

  /// Appends `bytes` and parses; a request's bytes leave the buffer.
  http_parse_result receive(std::string_view bytes) {
    buffer.append(bytes);
    auto out = parser.parse(buffer);
    continues += out.send_continue ? 1 : 0;
    if (out.what == kind::request)
      buffer.erase(0, out.consumed);
    return out;
  }

  /// Sends `bytes` one at a time; every byte but the last must leave the
  /// request incomplete.
  http_parse_result receive_bytewise(std::string_view bytes) {
    for (size_t i = 0; i + 1 < bytes.size(); ++i) {
      auto out = receive(bytes.substr(i, 1));
      if (out.what != kind::need_more) {
        FAIL_CHECK("finished early at byte " << i);
        return out;
      }
    }
    return receive(bytes.substr(bytes.size() - 1));
  }
};

/// The result of parsing `bytes` arriving at once.
http_parse_result parse_all(std::string_view bytes) {
  return http_request_parser{}.parse(bytes);
}

void check_refused(const http_parse_result& out, int status,
                   const std::string& message, ec code = ec::invalid_request) {
  REQUIRE(out.what == kind::failure);
  CHECK(out.status == status);
  CHECK(out.message == message);
  CHECK(out.code == code);
  CHECK(!out.request);
}

const std::string malformed_head = "the request header is malformed or too "
                                   "long";
const std::string malformed_chunks = "the chunked body is malformed";
const std::string too_large = "a message must be at most 1 MiB";

std::string post(std::string_view body, std::string_view extra = "") {
  return "POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\n" + std::string{extra} + "\r\n"
         + std::string{body};
}

std::string chunked_post(std::string_view chunks, std::string_view extra = "") {
  return "POST /v1/actions HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\n"
         + std::string{extra} + "\r\n" + std::string{chunks};
}

std::string hex(size_t n) {
  char text[32];
  snprintf(text, sizeof text, "%zx", n);
  return text;
}

} // namespace

TEST_CASE("http_parser: a simple GET is one request, its bytes consumed") {
  std::string get = "GET /v1/leases/abc?tag=x%20y HTTP/1.1\r\nHost: x\r\n"
                    "Authorization: Bearer k\r\n\r\n";
  auto out = parse_all(get);
  REQUIRE(out.what == kind::request);
  CHECK(out.consumed == get.size());
  CHECK(!out.send_continue);
  auto& req = *out.request;
  CHECK(req.head.getMethod() == "GET");
  CHECK(req.head.getURI() == "/v1/leases/abc?tag=x%20y");
  CHECK(req.head.getVersion() == "HTTP/1.1");
  CHECK(req.head.get("Authorization") == "Bearer k");
  CHECK(req.target.segments == std::vector<std::string>{"v1", "leases", "abc"});
  REQUIRE(req.target.query.size() == 1);
  CHECK(req.target.query[0].second == "x y");
  CHECK(req.body.empty());
}

TEST_CASE("http_parser: a POST whose bytes arrive one by one") {
  std::string body = R"({"action":"health"})";
  connection c;
  auto out = c.receive_bytewise(post(body));
  REQUIRE(out.what == kind::request);
  CHECK(out.request->body == body);
  CHECK(out.request->head.getMethod() == "POST");
  CHECK(c.buffer.empty());
  CHECK(c.continues == 0);
}

TEST_CASE("http_parser: pipelined requests come out one at a time") {
  std::string first = post("{}", "Connection: keep-alive\r\n");
  std::string second = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  connection c;
  auto out = c.receive(first + second + "GET /par");
  REQUIRE(out.what == kind::request);
  CHECK(out.consumed == first.size());
  CHECK(out.request->body == "{}");
  out = c.parser.parse(c.buffer);
  REQUIRE(out.what == kind::request);
  CHECK(out.consumed == second.size());
  CHECK(out.request->head.getURI() == "/healthz");
  c.buffer.erase(0, out.consumed);
  CHECK(c.buffer == "GET /par");
  CHECK(c.parser.parse(c.buffer).what == kind::need_more);
  CHECK(c.parser.holds_partial_request(c.buffer));
}

TEST_CASE("http_parser: a POST without length or chunks has no body") {
  std::string bare = "POST /v1/actions HTTP/1.1\r\nHost: x\r\n\r\n";
  auto out = parse_all(bare + "GET /healthz HTTP/1.1\r\n\r\n");
  REQUIRE(out.what == kind::request);
  CHECK(out.consumed == bare.size());
  CHECK(out.request->body.empty());
  // A length of 0 too: complete with its head.
  out = parse_all(post(""));
  REQUIRE(out.what == kind::request);
  CHECK(out.request->body.empty());
}

TEST_CASE("http_parser: leading empty lines and bare LF heads, as Poco reads") {
  std::string get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  auto out = parse_all("\r\n\r\n\n" + get);
  REQUIRE(out.what == kind::request);
  CHECK(out.consumed == get.size() + 5);
  out = parse_all("GET /healthz HTTP/1.1\nHost: x\n\n");
  REQUIRE(out.what == kind::request);
  CHECK(out.request->head.get("Host") == "x");
  connection c;
  CHECK(c.receive("\r\n\r\n").what == kind::need_more);
  CHECK(!c.parser.holds_partial_request(c.buffer));
  CHECK(c.receive(get).what == kind::request);
  CHECK(c.buffer.empty());
}

TEST_CASE("http_parser: chunked bodies split anywhere") {
  std::string chunks = "5;name=value\r\nhello\r\n6\r\n world\r\n"
                       "0\r\nX-Trailer: dropped\r\n\r\n";
  std::string request = chunked_post(chunks);
  std::string next = "GET /healthz HTTP/1.1\r\n\r\n";
  SUBCASE("byte by byte") {
    connection c;
    auto out = c.receive_bytewise(request);
    REQUIRE(out.what == kind::request);
    CHECK(out.request->body == "hello world");
    CHECK(!out.request->head.has("X-Trailer"));
  }
  SUBCASE("in two pieces, at every split point") {
    for (size_t cut = 1; cut < request.size(); ++cut) {
      connection c;
      CHECK(c.receive(request.substr(0, cut)).what == kind::need_more);
      auto out = c.receive(request.substr(cut) + next);
      REQUIRE_MESSAGE(out.what == kind::request, "cut at " << cut);
      CHECK(out.request->body == "hello world");
      CHECK(c.buffer == next);
    }
  }
  SUBCASE("inside the size line, the data and the final CRLF") {
    auto head = chunked_post("");
    connection c;
    for (auto piece : {head + "5;na", std::string{"me=value\r\nhel"},
                       std::string{"lo\r\n6\r\n world\r\n0\r\n\r"}})
      CHECK(c.receive(piece).what == kind::need_more);
    auto out = c.receive("\n");
    REQUIRE(out.what == kind::request);
    CHECK(out.request->body == "hello world");
  }
  SUBCASE("bare LF line ends and upper-case hex") {
    auto out = parse_all(chunked_post("A\nabcdefghij\n0\n\n"));
    REQUIRE(out.what == kind::request);
    CHECK(out.request->body == "abcdefghij");
  }
}

TEST_CASE("http_parser: a malformed chunked body is refused") {
  for (std::string bad : std::vector<std::string>{
         "z\r\n", "\r\n", ";x\r\n", "5 x\r\n", "5\rx", "5\r\nhelloXX",
         "5\r\nhello\r\r", "0\r\nnot a trailer\r\n\r\n", "0\r\n\rx",
         "1;" + std::string(5000, 'e') + "\r\n"}) {
    CAPTURE(bad);
    check_refused(parse_all(chunked_post(bad)), 400, malformed_chunks);
  }
}

TEST_CASE("http_parser: a Content-Length beyond 1 MiB is refused at once") {
  std::string head = "POST /v1/actions HTTP/1.1\r\nContent-Length: "
                     + std::to_string(max_message_bytes + 1) + "\r\n\r\n";
  check_refused(parse_all(head), 413, too_large, ec::too_large);
  auto out = parse_all(post(std::string(max_message_bytes, 'x')));
  REQUIRE(out.what == kind::request);
  CHECK(out.request->body.size() == max_message_bytes);
}

TEST_CASE("http_parser: a chunked body beyond 1 MiB is refused when known") {
  // One chunk that says so in its size, before any data.
  check_refused(parse_all(chunked_post(hex(max_message_bytes + 1))), 413,
                too_large, ec::too_large);
  // Leading zeros are no way around it.
  check_refused(parse_all(chunked_post("0000000000000000000000100001")), 413,
                too_large, ec::too_large);
  // Chunks that add up to more: refused at the size of the last one.
  std::string half(max_message_bytes / 2, 'x');
  std::string chunk = hex(half.size()) + "\r\n" + half + "\r\n";
  connection c;
  CHECK(c.receive(chunked_post(chunk + chunk)).what == kind::need_more);
  check_refused(c.receive("1"), 413, too_large, ec::too_large);
  // Exactly 1 MiB is taken.
  auto out = parse_all(chunked_post(chunk + chunk + "0\r\n\r\n"));
  REQUIRE(out.what == kind::request);
  CHECK(out.request->body.size() == max_message_bytes);
}

TEST_CASE("http_parser: versions: other HTTP versions 505, junk 400") {
  check_refused(parse_all("GET /healthz HTTP/9.9\r\n\r\n"), 505,
                "HTTP version HTTP/9.9 is not supported; use HTTP/1.1");
  check_refused(parse_all("GET /healthz HTTP/0.9\r\n\r\n"), 505,
                "HTTP version HTTP/0.9 is not supported; use HTTP/1.1");
  check_refused(parse_all("GET /healthz FOO/1.1\r\n\r\n"), 400,
                "the request line has no valid HTTP version");
  // An HTTP/0.9 request line has no version: Poco refuses it.
  check_refused(parse_all("GET /healthz\r\n\r\n"), 400, malformed_head);
  check_refused(parse_all("GET /healthz HTTP/1.1.1\r\n\r\n"), 400,
                malformed_head);
}

TEST_CASE("http_parser: junk is refused before a head's end comes") {
  // A TLS ClientHello on the plain port: no method is 33 bytes long.
  std::string hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
  hello += std::string(40, 'A');
  check_refused(parse_all(hello), 400, malformed_head);
  check_refused(parse_all("GET /" + std::string(20000, 'a')), 400,
                malformed_head);
  // Below Poco's limits it waits for the rest.
  CHECK(parse_all("GET /" + std::string(16000, 'a')).what == kind::need_more);
  // A field line Poco takes for the head's end (a lone CR) is refused.
  check_refused(parse_all("GET / HTTP/1.1\r\nHost: x\r\n\rX: y\r\n\r\n"), 400,
                malformed_head);
}

TEST_CASE("http_parser: framing refusals carry read_framing's statuses") {
  check_refused(parse_all(chunked_post("0\r\n\r\n", "Content-Length: 5\r\n")),
                400,
                "a request may not have both Content-Length and "
                "Transfer-Encoding");
  check_refused(
    parse_all("POST /v1/actions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
    501, "of the transfer codings only a single 'chunked' is supported");
  check_refused(parse_all(post("{}", "Content-Length: 3\r\n")), 400,
                "the request has differing Content-Length values");
  check_refused(parse_all("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}"),
                400,
                "Content-Length must be a decimal number of bytes below 2^64");
}

TEST_CASE("http_parser: a bad target gets parse_target's 400") {
  auto expected = *parse_target("/v1/leases/%zz").error;
  check_refused(parse_all("GET /v1/leases/%zz HTTP/1.1\r\n\r\n"), 400,
                expected);
  check_refused(parse_all("GET /v1/leases?tag=%00 HTTP/1.1\r\n\r\n"), 400,
                expected);
  check_refused(parse_all("GET healthz HTTP/1.1\r\n\r\n"), 400,
                "the request target must be a path starting with '/'");
}

TEST_CASE("http_parser: the checks run in the blocking server's order") {
  // Version before framing, framing before length, length before target.
  check_refused(parse_all("GET /%zz HTTP/2.0\r\nTransfer-Encoding: gzip"
                          "\r\n\r\n"),
                505, "HTTP version HTTP/2.0 is not supported; use HTTP/1.1");
  check_refused(parse_all("GET /%zz HTTP/1.1\r\nTransfer-Encoding: gzip"
                          "\r\n\r\n"),
                501,
                "of the transfer codings only a single 'chunked' is "
                "supported");
  check_refused(parse_all("POST /%zz HTTP/1.1\r\nContent-Length: 9999999"
                          "\r\n\r\n"),
                413, too_large, ec::too_large);
}

TEST_CASE("http_parser: Expect: 100-continue is flagged once per request") {
  std::string body = R"({"action":"health"})";
  auto request = post(body, "Expect: 100-continue\r\n");
  auto head_size = request.size() - body.size();
  connection c;
  auto out = c.receive(request.substr(0, head_size));
  CHECK(out.what == kind::need_more);
  CHECK(out.send_continue);
  out = c.receive(request.substr(head_size, 3));
  CHECK(out.what == kind::need_more);
  CHECK(!out.send_continue);
  out = c.receive(request.substr(head_size + 3));
  REQUIRE(out.what == kind::request);
  CHECK(out.request->body == body);
  CHECK(c.continues == 1);
  // The next request asks again: the flag is per request.
  c.receive(chunked_post("", "Expect: 100-continue\r\n"));
  CHECK(c.continues == 2);
  SUBCASE("not when the body came with the head") {
    connection d;
    CHECK(d.receive(request).what == kind::request);
    CHECK(d.continues == 0);
  }
  SUBCASE("not without a body to come") {
    connection d;
    d.receive("POST /v1/actions HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    CHECK(d.continues == 0);
  }
  SUBCASE("not to an HTTP/1.0 client (RFC 9110, 10.1.1)") {
    connection d;
    d.receive("POST /v1/actions HTTP/1.0\r\nExpect: 100-continue\r\n"
              "Content-Length: 2\r\n\r\n");
    CHECK(d.continues == 0);
  }
}

TEST_CASE("http_parser: a head too long or too big for Poco is refused") {
  // No end within the bound.
  std::string endless = "GET / HTTP/1.1\r\n";
  while (endless.size() <= max_head_bytes)
    endless += "X-Filler: " + std::string(1000, 'f') + "\r\n";
  check_refused(parse_all(endless), 400, malformed_head);
  // Endless empty lines count towards it too.
  check_refused(parse_all(std::string(max_head_bytes + 1, '\n')), 400,
                malformed_head);
  // Poco's own limits: a value of more than 8 KiB, more than 100 fields.
  check_refused(parse_all("GET / HTTP/1.1\r\nX-Big: " + std::string(9000, 'v')
                          + "\r\n\r\n"),
                400, malformed_head);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i <= 100; ++i)
    many += "X-" + std::to_string(i) + ": v\r\n";
  check_refused(parse_all(many + "\r\n"), 400, malformed_head);
}

TEST_CASE("http_parser: a big head fed byte by byte is still one request") {
  std::string head = "GET /healthz HTTP/1.1\r\n";
  for (int i = 0; i < 90; ++i)
    head += "X-" + std::to_string(i) + ": " + std::string(680, 'v') + "\r\n";
  head += "\r\n";
  REQUIRE(head.size() < max_head_bytes);
  connection c;
  auto out = c.receive_bytewise(head);
  REQUIRE(out.what == kind::request);
  CHECK(out.request->head.size() == 90);
  CHECK(out.consumed == head.size());
}

TEST_CASE("http_parser: keep-alive and close as the head says") {
  auto keep_alive = [](std::string_view version, std::string_view header) {
    auto out = parse_all("GET /healthz " + std::string{version} + "\r\n"
                         + std::string{header} + "\r\n");
    REQUIRE(out.what == kind::request);
    return out.request->head.getKeepAlive();
  };
  CHECK(keep_alive("HTTP/1.1", ""));
  CHECK(!keep_alive("HTTP/1.1", "Connection: close\r\n"));
  CHECK(!keep_alive("HTTP/1.0", ""));
  CHECK(keep_alive("HTTP/1.0", "Connection: keep-alive\r\n"));
}

TEST_CASE("http_parser: what a closed connection leaves") {
  http_request_parser p;
  CHECK(!p.holds_partial_request(""));
  CHECK(!p.holds_partial_request("\r\n"));
  CHECK(p.holds_partial_request("GE"));
  // A head taken, its body not yet whole.
  std::string partial = post("{}").substr(0, post("{}").size() - 1);
  CHECK(p.parse(partial).what == kind::need_more);
  CHECK(p.holds_partial_request(partial));
}

TEST_CASE("http_parser: after a refusal the parser starts afresh") {
  http_request_parser p;
  check_refused(p.parse("GET / HTTP/9.9\r\n\r\n"), 505,
                "HTTP version HTTP/9.9 is not supported; use HTTP/1.1");
  CHECK(p.parse("GET / HTTP/1.1\r\n\r\n").what == kind::request);
}
