#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/ThreadPool.h>

#include "api/dispatcher.hpp"
#include "api/tcp_limits.hpp"

namespace tlm {

class connection_registry;

/// The TCP API: one JSON object a line, replies in request order. A
/// connection's thread reads the complete lines available (up to 512, and
/// within budgets of requests and reply bytes shared by all connections),
/// sends them to the manager at once, then writes the replies back in
/// order: one thread per connection, never per request, and pipelining
/// clients get whole batches served in parallel by the actors.
///
/// Idle connections are closed after `limits.idle_timeout_ms`, and at
/// `max_connections` a new client takes the place of the longest-idle one.
class tcp_server {
public:
  /// Serves on `socket`, already listening (see `listen_exclusively`).
  tcp_server(dispatcher& d, Poco::Net::ServerSocket socket, int max_connections,
             tcp_limits limits = {});
  ~tcp_server();

  uint16_t port() const;

  void start();

  /// Stops accepting, lets each connection finish its current batch (a
  /// write its client does not read is given up after a second), and joins
  /// the threads.
  void stop();

private:
  Poco::ThreadPool pool_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  std::shared_ptr<connection_registry> registry_;
  std::unique_ptr<Poco::Net::TCPServer> server_;
};

} // namespace tlm
