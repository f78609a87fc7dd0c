#pragma once

#include <cstdint>
#include <memory>

#include <Poco/Net/ServerSocket.h>

#include "api/dispatcher.hpp"
#include "api/http_answer.hpp"
#include "api/http_guard.hpp"

namespace tlm {

class io_loops;

/// The HTTP API: `POST /v1/actions` with an action message, plus REST
/// routes over the same core, served by event loops (api/io_loops.hpp): a
/// slow or idle client holds a socket, never a thread. Keep-alive and
/// pipelining: the requests a read completes go to the manager as one
/// batch and are answered in order (api/http_parser.hpp reads them).
/// Surfaces (token_server) run on two worker threads, since they wait for
/// several core calls in turn. Deadlines and a limit per peer bound what a
/// client may hold (see `http_limits`).
class http_server {
public:
  /// Serves on `socket`, already listening (see `listen_exclusively`);
  /// `surfaces` (token_server, Taler) answer the paths they own first.
  /// `threads` sizes the connection limit: beyond `threads` plus four
  /// times as many (at least 1024) open connections, new ones get 503.
  http_server(dispatcher& d, Poco::Net::ServerSocket socket, int threads,
              http_limits limits = {}, std::vector<http_surface> surfaces = {},
              std::shared_ptr<io_loops> loops = {});
  ~http_server();

  uint16_t port() const;

  void start();

  /// Stops accepting, finishes requests in progress, closes.
  void stop();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace tlm
