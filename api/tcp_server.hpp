#pragma once

#include <cstdint>
#include <memory>

#include <Poco/Net/ServerSocket.h>

#include "api/dispatcher.hpp"
#include "api/tcp_limits.hpp"

namespace tlm {

class io_loops;

/// The TCP API: one JSON object a line, replies in request order, served
/// by a few event loops (api/io_loops.hpp), never a thread a connection.
/// What a connection has read in one go (up to 512 complete lines, within
/// budgets of requests and reply bytes shared by all connections) reaches
/// the manager as one batch, and the replies come back as one and are
/// written in order. Requests on one connection keep their order of
/// effect: a line that depends on an earlier line of its batch starts the
/// next batch (api/request_order.hpp).
///
/// Idle connections are closed after `limits.idle_timeout_ms`, and at
/// `max_connections` a new client takes the place of the longest-idle one.
class tcp_server {
public:
  /// Serves on `socket`, already listening (see `listen_exclusively`), on
  /// `loops` (none: loops of its own).
  tcp_server(dispatcher& d, Poco::Net::ServerSocket socket, int max_connections,
             tcp_limits limits = {}, std::shared_ptr<io_loops> loops = {});
  ~tcp_server();

  uint16_t port() const;

  void start();

  /// Stops accepting, lets each connection finish its current batch (a
  /// write its client does not read is given up after a second), and
  /// waits until no batch of ours is in flight.
  void stop();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace tlm
