#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace tlm {

/// The idle connections of one backend to its service, shared by the
/// threads that serve its calls in flight. A connection is taken for one
/// call and given back when the call leaves it usable, so the service sees
/// at most `max_in_flight` connections plus a few idle ones.
template <class Connection>
class connection_pool {
public:
  /// More idle connections than calls in flight (256 at most) are never
  /// needed; 64 keeps a burst's connections without hoarding sockets.
  static constexpr size_t max_idle = 64;

  /// An idle connection that `usable` accepts, or null when none is left.
  /// Connections it refuses are closed. `usable` runs outside the lock, as
  /// it may poll the socket.
  template <class Predicate>
  std::unique_ptr<Connection> take_idle(Predicate usable) {
    for (;;) {
      std::unique_ptr<Connection> connection;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        if (idle_.empty())
          return nullptr;
        connection = std::move(idle_.back());
        idle_.pop_back();
      }
      if (usable(*connection))
        return connection;
    }
  }

  std::unique_ptr<Connection> take_idle() {
    return take_idle([](Connection&) { return true; });
  }

  /// Keeps a connection for the next call (or closes it when enough are
  /// idle).
  void give_back(std::unique_ptr<Connection> connection) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (idle_.size() < max_idle)
      idle_.push_back(std::move(connection));
  }

private:
  std::mutex mtx_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

} // namespace tlm
