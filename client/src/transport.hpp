#pragma once

// How a message reaches the server and its reply comes back.

#include <functional>
#include <memory>

#include "tlm/connection_options.hpp"
#include "wire.hpp"

namespace tlm::inline client_api::detail {

class transport {
public:
  using on_reply = std::function<void(wire::reply)>;

  virtual ~transport() = default;

  /// Sends one message. `done` runs once with its reply or failure: on
  /// the transport's I/O thread, or on the calling thread when the
  /// message could not be sent at all.
  virtual void send(const wire::json& msg, on_reply done) = 0;
};

std::unique_ptr<transport> make_tcp_transport(const connection_options& opts);
std::unique_ptr<transport> make_http_transport(const connection_options& opts);

/// A transport that fails every call with `err` (e.g. TLS asked for).
std::unique_ptr<transport> make_failing_transport(failure err);

} // namespace tlm::inline client_api::detail
