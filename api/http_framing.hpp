#pragma once

// How an HTTP request is framed, checked before it is routed: its version,
// its body length and its target. Pure functions over Poco's parsed header,
// tested without sockets.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <Poco/Net/MessageHeader.h>

namespace tlm {

/// Why the transport refuses a request: the HTTP status and a message for
/// the failure object.
struct framing_error {
  int status = 400;
  std::string message;
};

/// HTTP/1.0 and HTTP/1.1 are served; another HTTP version gets 505, and
/// anything that is not an HTTP version 400.
std::optional<framing_error> check_version(const std::string& version);

/// How a request's body is delimited.
struct body_framing {
  bool chunked = false;
  /// The `Content-Length`, when one is given.
  std::optional<uint64_t> length;
  std::optional<framing_error> error;
};

/// Reads `Content-Length` and `Transfer-Encoding` strictly (RFC 9112,
/// 6.1 to 6.3): a length that is not a decimal number, or does not fit 64
/// bits, and differing lengths are refused (400), and so are a length
/// together with chunks; a transfer coding other than `chunked` gets 501.
body_framing read_framing(const Poco::Net::MessageHeader& header);

/// The value of a hexadecimal digit, or -1 (escapes and chunk sizes).
int hex_value(char c);

/// A request target split into decoded path segments and query parameters.
struct http_target {
  /// `/v1/leases/abc` is {"v1", "leases", "abc"}; `%2F` stays inside its
  /// segment, so an id is always one segment.
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;
  /// Set when the target is malformed (e.g. `%zz`); then the rest is empty.
  std::optional<std::string> error;
};

/// Splits an origin-form (`/path?query`) or absolute-form target. A `%`
/// must start a valid escape; an escape may not decode to a NUL byte.
http_target parse_target(const std::string& target);

} // namespace tlm
