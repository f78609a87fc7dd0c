#pragma once

// What keeps the thread-per-connection HTTP server available when clients
// are slow, idle or many: deadlines per request, a limit per peer address
// and shedding of connections that hold a worker while waiting on their
// client. Time is passed in, so the rules are tested without sleeping.

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

using steady_time = std::chrono::steady_clock::time_point;

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

/// What a connection's worker is doing.
enum class conn_phase {
  /// Waiting for a request's header or body: bounded by the read deadline.
  reading,
  /// Keep-alive, waiting for the next request: bounded by the idle timeout.
  idle,
  /// Running a request or writing its reply; never shed.
  busy,
};

/// The connections that hold a worker, with their phase and deadline. A
/// watchdog calls `sweep` a few times a second: it shuts down the read side
/// of connections past their deadline and, when connections wait for a
/// worker, of the ones waiting longest on their client.
class connection_registry {
public:
  using id = uint64_t;

  /// Registers a connection in phase `reading`; returns its id.
  id add(const Poco::Net::StreamSocket& socket, steady_time now,
         int64_t read_timeout_ms);

  void remove(id conn);

  /// Moves a connection to `phase` (`deadline_ms` from `now`; ignored for
  /// `busy`). Returns false when the connection should close instead of
  /// waiting for its client: the server stops or the watchdog cut it.
  bool enter(id conn, conn_phase phase, steady_time now, int64_t deadline_ms);

  /// True when the watchdog cut this connection off (deadline or shedding):
  /// its reads ended early, so the request is answered 408 if at all.
  bool cut(id conn) const;

  /// Cuts connections past their deadline, then up to `waiting` more (the
  /// connections queued for a worker): idle ones first, then those reading
  /// longest, but none reading for less than `shed_after_ms`. Returns how
  /// many were cut.
  size_t sweep(steady_time now, size_t waiting, int64_t shed_after_ms);

  /// Stops the server: cuts connections waiting on their client now and
  /// refuses new waits; requests being run finish.
  void stop();

  size_t size() const;

private:
  struct entry {
    Poco::Net::StreamSocket socket;
    conn_phase phase = conn_phase::reading;
    steady_time since;
    steady_time deadline;
    bool cut = false;
  };

  /// Shuts down the read side: the worker's read or poll returns at once.
  static void cut_off(entry& e);

  mutable std::mutex mtx_;
  std::map<id, entry> entries_;
  id next_ = 0;
  bool stopping_ = false;
};

} // namespace tlm
