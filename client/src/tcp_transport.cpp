// TCP: one JSON object a line, pipelined; replies come back in order, so
// the oldest call in flight owns the next line.

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include "transport.hpp"

namespace tlm::inline client_api::detail {

namespace {

using steady = std::chrono::steady_clock;

struct pending_call {
  transport::on_reply done;
  steady::time_point deadline;
};

/// One connection and the thread reading its replies.
struct connection {
  Poco::Net::StreamSocket socket;
  std::thread reader;
  std::atomic<bool> closed{false};
};

class tcp_transport : public transport {
public:
  explicit tcp_transport(connection_options opts) : opts_(std::move(opts)) {
  }

  ~tcp_transport() override {
    std::lock_guard writing{write_mtx_};
    std::unique_lock guard{mtx_};
    auto calls = close_locked();
    auto conn = std::move(conn_);
    guard.unlock();
    retire(std::move(conn));
    for (auto& old : std::exchange(own_readers_, {}))
      old->reader.join();
    for (auto& call : calls)
      call.done(failure{errc::connection_failed, "the client was closed"});
  }

  // write_mtx_ keeps the lines in the order of their entries in pending_;
  // the reader needs only mtx_, so it goes on reading replies while a
  // write waits for the server (which reads no more while its replies go
  // unread).
  void send(const wire::json& msg, on_reply done) override {
    std::unique_lock writing{write_mtx_};
    std::unique_ptr<connection> old;
    auto err = ensure_connected(old);
    retire(std::move(old));
    connection* c = nullptr;
    if (!err) {
      std::lock_guard guard{mtx_};
      c = conn_.get();
      if (c->closed)
        err = failure{errc::connection_failed,
                      where() + " closed the connection"};
      else
        pending_.push_back(
          {std::move(done), steady::now() + opts_.request_timeout});
    }
    if (err) {
      writing.unlock();
      done(*err);
      return;
    }
    try {
      write_all(c->socket, msg.dump() + "\n");
    } catch (const Poco::Exception& e) {
      writing.unlock();
      std::unique_lock guard{mtx_};
      // Whoever closed it first has failed the calls in flight already.
      if (conn_.get() == c && !c->closed)
        close_and_fail(
          guard, {errc::connection_failed,
                  "sending to " + where() + " failed: " + e.displayText()});
    }
  }

private:
  std::string where() const {
    return "tlmd at " + opts_.host + ":" + std::to_string(opts_.port);
  }

  static void write_all(Poco::Net::StreamSocket& s, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size())
      sent += s.sendBytes(data.data() + sent,
                          static_cast<int>(data.size() - sent));
  }

  /// Connects (and authenticates) when there is no open connection; the
  /// closed one, if any, goes to `old`. Runs with write_mtx_ held.
  std::optional<failure> ensure_connected(std::unique_ptr<connection>& old) {
    if (conn_ && !conn_->closed)
      return std::nullopt;
    auto conn = std::make_unique<connection>();
    auto ms = [](std::chrono::milliseconds d) {
      return Poco::Timespan{d.count() * 1000};
    };
    try {
      Poco::Net::SocketAddress addr{opts_.host, opts_.port};
      conn->socket.connect(addr, ms(opts_.connect_timeout));
      conn->socket.setNoDelay(true);
      // A write the server does not take in time fails instead of hanging.
      conn->socket.setSendTimeout(ms(opts_.request_timeout));
      if (!opts_.api_key.empty())
        write_all(conn->socket, auth_line());
    } catch (const Poco::Exception& e) {
      return failure{errc::connection_failed,
                     "cannot connect to " + where() + ": " + e.displayText()};
    }
    std::lock_guard guard{mtx_};
    old = std::move(conn_);
    conn_ = std::move(conn);
    // The auth line went first; a refused key makes every later request
    // `unauthorized` with the server's own message, so its reply is
    // skipped. (pending_ is empty: closing the old connection failed all.)
    if (!opts_.api_key.empty())
      pending_.push_back(
        {[](wire::reply) {}, steady::now() + opts_.request_timeout});
    conn_->reader = std::thread([this, c = conn_.get()] { read_loop(*c); });
    return std::nullopt;
  }

  std::string auth_line() const {
    return wire::json{{"action", "auth"}, {"api_key", opts_.api_key}}.dump()
           + "\n";
  }

  /// Closes a connection that is no longer current and joins its reader.
  /// A callback on that very reader (one that sent again after a failure)
  /// cannot join itself: the connection is kept until the destructor, as
  /// the reader still uses it when the callback returns.
  void retire(std::unique_ptr<connection> c) {
    if (!c)
      return;
    c->closed = true;
    try {
      c->socket.shutdown();
    } catch (const Poco::Exception&) {
    }
    if (!c->reader.joinable())
      return;
    if (c->reader.get_id() == std::this_thread::get_id()) {
      std::lock_guard guard{mtx_};
      own_readers_.push_back(std::move(c));
      return;
    }
    c->reader.join();
  }

  void read_loop(connection& c);
  bool deliver_lines(connection& c, std::string& buf);
  /// Closes the connection and takes the calls in flight out, to be
  /// failed once the lock is released (their callbacks may call send).
  std::deque<pending_call> close_locked();
  void close_and_fail(std::unique_lock<std::mutex>& guard, failure err);

  connection_options opts_;
  std::mutex write_mtx_; ///< taken before mtx_, never after it
  std::mutex mtx_;       ///< pending_, conn_ (changed holding both)
  std::unique_ptr<connection> conn_;
  std::deque<pending_call> pending_;
  std::vector<std::unique_ptr<connection>> own_readers_;
};

void tcp_transport::read_loop(connection& c) {
  std::string buf;
  char chunk[65536];
  while (!c.closed) {
    try {
      if (!c.socket.poll(Poco::Timespan{0, 100000},
                         Poco::Net::Socket::SELECT_READ)) {
        std::unique_lock guard{mtx_};
        if (c.closed)
          return;
        if (!pending_.empty() && steady::now() > pending_.front().deadline)
          close_and_fail(
            guard, {errc::timeout,
                    "no reply from " + where() + " within "
                      + std::to_string(opts_.request_timeout.count()) + " ms"});
        continue;
      }
      int n = c.socket.receiveBytes(chunk, sizeof chunk);
      if (n <= 0) {
        std::unique_lock guard{mtx_};
        if (c.closed)
          return;
        close_and_fail(
          guard, {errc::connection_failed, where() + " closed the connection"});
        return;
      }
      buf.append(chunk, static_cast<size_t>(n));
      if (!deliver_lines(c, buf))
        return;
    } catch (const Poco::Exception& e) {
      std::unique_lock guard{mtx_};
      if (c.closed)
        return;
      close_and_fail(
        guard, {errc::connection_failed,
                "reading from " + where() + " failed: " + e.displayText()});
      return;
    }
  }
}

/// Hands every complete line to its call; false when the connection is
/// closed (or the server sent a reply nobody asked for, which closes it).
bool tcp_transport::deliver_lines(connection& c, std::string& buf) {
  size_t start = 0;
  for (auto nl = buf.find('\n'); nl != std::string::npos;
       nl = buf.find('\n', start)) {
    auto line = buf.substr(start, nl - start);
    start = nl + 1;
    std::unique_lock guard{mtx_};
    if (c.closed)
      return false; // its calls were failed already
    if (pending_.empty()) {
      close_and_fail(
        guard, {errc::bad_reply, where() + " sent a reply nobody asked for"});
      return false;
    }
    auto call = std::move(pending_.front());
    pending_.pop_front();
    guard.unlock();
    call.done(wire::parse_reply(line));
  }
  buf.erase(0, start);
  return true;
}

std::deque<pending_call> tcp_transport::close_locked() {
  if (conn_) {
    conn_->closed = true;
    try {
      conn_->socket.shutdown();
    } catch (const Poco::Exception&) {
    }
  }
  auto calls = std::move(pending_);
  pending_.clear();
  return calls;
}

void tcp_transport::close_and_fail(std::unique_lock<std::mutex>& guard,
                                   failure err) {
  auto calls = close_locked();
  guard.unlock();
  for (auto& call : calls)
    call.done(err);
}

} // namespace

std::unique_ptr<transport> make_tcp_transport(const connection_options& opts) {
  return std::make_unique<tcp_transport>(opts);
}

} // namespace tlm::inline client_api::detail
