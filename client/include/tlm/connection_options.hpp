#pragma once

// Where the server is and how to talk to it.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "tlm/result.hpp"

namespace tlm::inline client_api {

enum class transport_kind { tcp, http };

/// TLS settings, for when tlmd serves TLS (issue 13). Until then a client
/// with `enabled` refuses to connect with `unsupported`, never falling
/// back to plain text.
struct tls_options {
  bool enabled = false;
  std::string ca_file;
  std::string server_name;
};

struct connection_options {
  transport_kind transport = transport_kind::tcp;
  std::string host = "127.0.0.1";
  uint16_t port = 3667;
  /// Sent as `auth` first on TCP, as `Authorization: Bearer` on HTTP.
  std::string api_key;
  tls_options tls;
  std::chrono::milliseconds connect_timeout{5000};
  /// A call without a reply by then fails with `timeout`.
  std::chrono::milliseconds request_timeout{10000};
};

/// Reads `tcp://host:port`, `http://host:port` or `host:port` (TCP) into
/// `opts` (transport, host, port). `https://` and `tls://` set TLS on.
result<done> parse_address(std::string_view address, connection_options& opts);

/// The first key in an API key file: the first line that is neither blank
/// nor a `#` comment, trimmed.
result<std::string> read_api_key_file(const std::string& path);

} // namespace tlm::inline client_api
