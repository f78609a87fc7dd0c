#pragma once

// What the TCP and HTTP servers share: connections that live on one event
// loop each (api/io_loops.hpp), read into their loop's scratch buffer and
// write their queued output in order; and the server that accepts them,
// registers them for eviction and shutdown, and sweeps their deadlines.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <Poco/Net/ServerSocket.h>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "api/io_loops.hpp"

namespace tlm {

/// Milliseconds on the steady clock.
int64_t steady_now_ms();

/// At shutdown, a write its client does not take for this long is given up.
constexpr int64_t stop_write_ms = 1'000;

class loop_conn;
class loop_server;

/// One loop's share of the connections, touched only on its thread.
struct loop_state {
  explicit loop_state(asio::io_context& c);

  asio::io_context& ctx;
  asio::steady_timer timer;
  /// What one read takes from a socket: idle connections hold no buffer.
  std::vector<char> scratch;
  std::vector<std::shared_ptr<loop_conn>> conns;
};

/// A connection on its loop. Subclasses take their input from `in_` in
/// `on_input` and queue replies with `queue`.
class loop_conn : public std::enable_shared_from_this<loop_conn> {
public:
  loop_conn(loop_state& loop, asio::ip::tcp::socket socket);
  virtual ~loop_conn() = default;

  // -- what the server sees (any thread) --------------------------------------

  std::atomic<int64_t> last_active_ms{0};
  /// Work in flight or replies being written: never evicted.
  std::atomic<bool> busy{false};
  /// Chosen to make room at the connection limit; closes at its next check.
  std::atomic<bool> evicted{false};

  loop_state& loop() const {
    return loop_;
  }

  // -- on the connection's loop -----------------------------------------------

  /// Joins the loop's connections and begins.
  void start();

  /// Deadlines, a few times a second and when evicted.
  virtual void check(int64_t now) = 0;

  /// The server stops: finish what is in flight, write it, close.
  virtual void shut() = 0;

  void close();

private:
  friend class loop_server;
  /// The server that counts us, and our place in its list.
  std::shared_ptr<loop_server> server_;
  size_t registry_index_ = 0;

protected:
  /// Bytes arrived in `in_`, or the client closed its side (`eof_`).
  virtual void on_input() = 0;

  /// `n` bytes of output reached the client.
  virtual void on_written(size_t n) {
    (void)n;
  }

  /// Called once, when the connection closes.
  virtual void on_close() {
  }

  void touch() {
    last_active_ms = steady_now_ms();
  }

  void wait_readable();

  /// Queues `bytes` behind the output not yet written.
  void queue(std::string_view bytes) {
    out_.append(bytes);
  }

  /// Writes what is queued (one write at a time).
  void write_more();

  /// Closes once every queued byte is written.
  void finish_after_writes();

  /// Sends `bytes` now if the socket takes them without waiting, else
  /// nothing: a notice a client that does not read is not waited for.
  void send_now(std::string_view bytes);

  /// Output queued or being written.
  int64_t held() const {
    return static_cast<int64_t>(out_.size() + writing_.size() - written_);
  }

  bool writing() const {
    return writing_active_ || held() > 0;
  }

  void update_busy(bool working) {
    busy = working || held() > 0;
  }

  std::string in_;
  bool eof_ = false;
  bool closed_ = false;

private:
  void on_readable(const asio::error_code& err);
  void written(const asio::error_code& err, size_t n);

  loop_state& loop_;
  asio::ip::tcp::socket sock_;
  size_t index_ = 0;
  std::string out_;
  std::string writing_;
  size_t written_ = 0;
  bool reading_ = false;
  bool writing_active_ = false;
  bool close_when_written_ = false;
};

/// Accepts connections onto the loops and keeps the list of those open.
class loop_server : public std::enable_shared_from_this<loop_server> {
public:
  loop_server(Poco::Net::ServerSocket socket, std::shared_ptr<io_loops> loops,
              int64_t sweep_ms);
  virtual ~loop_server() = default;

  uint16_t port() const;

  /// Accepts, and sweeps each loop every `sweep_ms`.
  void start();

  /// Stops accepting, asks every connection to `shut`, and waits until
  /// all are closed and `settled` holds.
  void stop(const std::function<bool()>& settled);

  /// Closes the longest-idle connection that is not busy to make room for
  /// a new one; false when every one is busy.
  bool evict_one();

  /// After `stop`, from a thread that is not a loop: ends the loops if
  /// they are our own, so that no handler outlives the server.
  void join_own_loops() {
    if (own_loops_)
      loops_->join();
  }

  /// Open connections, not counting those evicted and about to close.
  size_t open() const;

  /// A closing connection leaves the list.
  void leave(loop_conn& c);

  std::atomic<bool> stopping{false};

protected:
  /// A connection for a new socket on `loop`, or none (refused, after
  /// being told why).
  virtual std::shared_ptr<loop_conn>
  make_conn(loop_state& loop, asio::ip::tcp::socket socket) = 0;

  std::shared_ptr<io_loops> loops_;

private:
  void accept();
  void sweep(loop_state& loop);
  void arm_sweep(loop_state& loop);

  bool own_loops_;
  Poco::Net::ServerSocket listening_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::vector<std::unique_ptr<loop_state>> loop_states_;
  size_t next_loop_ = 0;
  int64_t sweep_ms_;
  mutable std::mutex mtx_;
  std::vector<loop_conn*> live_;
  size_t evicted_ = 0;
};

} // namespace tlm
