#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

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

  /// `service` names the backend in error messages, e.g. "InfluxDB 'metrics'".
  static caf::expected<std::shared_ptr<http_client>>
  make(const std::string& base_url, std::chrono::milliseconds timeout,
       std::string service);

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
  http_client() = default;

  std::unique_ptr<Poco::Net::HTTPClientSession> take();
  void give_back(std::unique_ptr<Poco::Net::HTTPClientSession> session);

  std::string base_url_;
  std::string scheme_;
  std::string host_;
  uint16_t port_ = 0;
  std::string path_prefix_;
  std::chrono::milliseconds timeout_{10'000};
  std::string service_;
  std::mutex mtx_;
  std::vector<std::unique_ptr<Poco::Net::HTTPClientSession>> idle_;
};

/// Percent-encodes a query parameter value.
std::string url_encode(const std::string& text);

} // namespace tlm
