#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "cloud_backends/connection_pool.hpp"
#include "cloud_backends/service_errors.hpp"

namespace Poco::Net {
class HTTPClientSession;
} // namespace Poco::Net

namespace tlm {

struct http_response {
  int status = 0;
  std::string body;
};

/// A small pool of keep-alive HTTP(S) connections to one service, safe to
/// use from several threads. Connect and read time out; certificates of
/// https URLs are verified against the system's CAs.
class http_client {
public:
  using headers = std::vector<std::pair<std::string, std::string>>;

  /// `base_url` is an http:// or https:// URL, as checked by
  /// `settings_reader::http_url`; `errors` words its failures.
  http_client(const std::string& base_url, std::chrono::milliseconds timeout,
              service_errors errors);

  ~http_client();

  /// Sends one request. A refused, reset or timed-out connection is
  /// `backend_unavailable`; idempotent methods are retried once on a fresh
  /// connection when a kept-alive one turns out to be closed.
  caf::expected<http_response> send(const std::string& method,
                                    const std::string& path,
                                    const std::string& body = {},
                                    const headers& extra = {});

  const std::string& base_url() const {
    return base_url_;
  }

private:
  /// A kept-alive session the server has not closed, or a new one.
  std::unique_ptr<Poco::Net::HTTPClientSession> take();

  std::string base_url_;
  std::string scheme_;
  std::string host_;
  uint16_t port_ = 0;
  std::string path_prefix_;
  std::chrono::milliseconds timeout_{10'000};
  service_errors errors_;
  connection_pool<Poco::Net::HTTPClientSession> pool_;
};

/// Percent-encodes a query parameter value.
std::string url_encode(const std::string& text);

} // namespace tlm
