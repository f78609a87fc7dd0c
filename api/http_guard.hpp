#pragma once

// What bounds the HTTP server's clients: deadlines per request and a limit
// of connections per peer address.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <Poco/Net/StreamSocket.h>

namespace tlm {

/// The HTTP server's limits; the defaults here are the daemon's defaults.
struct http_limits {
  /// A request's header and body must arrive within this time, counted
  /// from when a worker starts waiting for it (a new connection) or from
  /// its first byte (a keep-alive connection).
  int64_t read_timeout_ms = 5'000;
  /// A keep-alive connection with no new request is closed after this.
  int64_t idle_timeout_ms = 10'000;
  /// Connections one peer address may have open or queued at once.
  int max_per_peer = 32;
};

/// Counts open connections per peer address. Connections are known by
/// their socket descriptor: a socket reset before its worker runs has no
/// peer address any more, but still its descriptor.
class peer_limiter {
public:
  explicit peer_limiter(int max_per_peer) : max_(max_per_peer) {
    // nop
  }

  /// Counts connection `fd` from `peer`, or returns false (and counts
  /// nothing) when the peer already has its maximum.
  bool try_acquire(const std::string& peer, int64_t fd);

  /// Forgets connection `fd`; unknown descriptors are ignored.
  void release(int64_t fd);

  /// Connections counted for `peer`.
  int count(const std::string& peer) const;

private:
  mutable std::mutex mtx_;
  int max_;
  std::map<std::string, int> per_peer_;
  std::map<int64_t, std::string> peer_of_;
};

} // namespace tlm
