#pragma once

#include <cstdint>
#include <memory>

#include <Poco/Net/ServerSocket.h>

#include "api/dispatcher.hpp"
#include "api/http_answer.hpp"
#include "api/http_guard.hpp"

namespace tlm {

/// The HTTP API: `POST /v1/actions` with an action message, plus REST
/// routes over the same core. Poco's TCP server, thread per connection, on
/// a thread pool we own (so shutdown can join it); each request thread
/// waits for its reply. Deadlines, a limit per peer and shedding of the
/// connections that wait longest on their client keep workers free for
/// others (see `http_limits`).
class http_server {
public:
  /// Serves on `socket`, already listening (see `listen_exclusively`);
  /// `surfaces` (token_server, Taler) answer the paths they own first.
  http_server(dispatcher& d, Poco::Net::ServerSocket socket, int threads,
              http_limits limits = {}, std::vector<http_surface> surfaces = {});
  ~http_server();

  uint16_t port() const;

  void start();

  /// Stops accepting, finishes requests in progress, joins the threads.
  void stop();

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace tlm
