#pragma once

#include <cstdint>
#include <memory>

#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/ThreadPool.h>

#include "api/dispatcher.hpp"

namespace tlm {

/// The HTTP API: `POST /v1/actions` with an action message, plus REST
/// routes over the same core. Poco's server on a thread pool we own (so
/// shutdown can join it); each request thread waits for its reply.
class http_server {
public:
  /// Serves on `socket`, already listening (see `listen_exclusively`).
  http_server(dispatcher& d, Poco::Net::ServerSocket socket, int threads);
  ~http_server();

  uint16_t port() const;

  void start();

  /// Stops accepting, finishes requests in progress, joins the threads.
  void stop();

private:
  Poco::ThreadPool pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
  bool stopped_ = false;
};

} // namespace tlm
