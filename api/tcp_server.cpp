#include "api/tcp_server.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>

#include "api/envelope.hpp"
#include "api/io_loops.hpp"
#include "api/loop_server.hpp"
#include "api/reply_estimates.hpp"
#include "api/request_order.hpp"

namespace tlm {

namespace {

using asio::ip::tcp;

/// Requests in flight at once: of one connection's batch, and of all of
/// them. More wait in the sockets, which is free. The manager's own calls
/// to its backends and storage are CAF requests, whose bookkeeping costs
/// more per reply the more are pending.
constexpr size_t max_batch_lines = 512;
constexpr size_t max_in_flight_total = 2048;

/// A batch whose replies may need at most this many bytes never waits for
/// the shared reply budget (it is still counted): clients that read their
/// replies keep being served while non-reading ones fill the budget.
constexpr int64_t small_batch_bytes = 64 * 1024;

/// Input read ahead of the batch being answered; a longer line is read
/// whole (up to the line limit) before anything else.
constexpr size_t read_ahead_bytes = 256 * 1024;

class tcp_conn;
using conn_ptr = std::shared_ptr<loop_conn>;

/// A line of a batch, ready to send to the manager.
struct batch_line {
  api_request req;
  bool blank = false;
  reply_kind kind = reply_kind::small;
};

} // namespace

struct tcp_server::impl : loop_server {
  impl(dispatcher& d, Poco::Net::ServerSocket s, size_t max_conns,
       tcp_limits lim, std::shared_ptr<io_loops> l);

  std::shared_ptr<loop_conn> make_conn(loop_state& loop,
                                       tcp::socket socket) override;

  std::shared_ptr<impl> self() {
    return std::static_pointer_cast<impl>(shared_from_this());
  }

  // -- budgets (any thread) ---------------------------------------------------

  /// Takes up to `n` request slots (none: `waiter` is resumed once some
  /// are free).
  size_t acquire_requests(size_t n, const conn_ptr& waiter);
  void release_requests(size_t n);
  /// False (and `waiter` resumed later) when all connections together
  /// hold the whole reply budget.
  bool reply_bytes_free(const conn_ptr& waiter);
  void hold_bytes(int64_t n) {
    reply_bytes += n;
  }
  void release_bytes(int64_t n);
  void wake_waiters(std::unique_lock<std::mutex>& guard);

  dispatcher& disp;
  tcp_limits limits;
  size_t max_connections;
  reply_estimates estimates;
  std::atomic<int64_t> reply_bytes{0};
  /// Batches sent to the manager whose outcome has not come back.
  std::atomic<size_t> batches{0};

  std::mutex mtx; // guards the rest
  std::vector<std::weak_ptr<loop_conn>> waiters;
  std::atomic<bool> has_waiters{false};
  size_t in_flight = 0;
};

namespace {

class tcp_conn : public loop_conn {
public:
  using impl = tcp_server::impl;

  tcp_conn(std::shared_ptr<impl> srv, loop_state& loop, tcp::socket s)
    : loop_conn(loop, std::move(s)),
      srv_(std::move(srv)),
      authenticated_(srv_->disp.keys().empty()),
      auth_deadline_ms_(steady_now_ms() + srv_->limits.auth_timeout_ms) {
    // nop
  }

  /// Deadlines: eviction, auth, idle, and a shutdown's last writes.
  void check(int64_t now) override {
    if (closed_)
      return;
    if (evicted) {
      notify(ec::overloaded, "closing this idle connection: the server "
                             "reached its connection limit");
      return close();
    }
    if (!authenticated_ && now >= auth_deadline_ms_) {
      notify(ec::unauthorized, "no valid auth within "
                                 + std::to_string(srv_->limits.auth_timeout_ms)
                                 + " ms; closing the connection");
      return close();
    }
    if (batch_out_)
      return;
    auto idle = now - last_active_ms.load();
    if (srv_->stopping && idle >= stop_write_ms)
      return close();
    if (srv_->limits.idle_timeout_ms > 0
        && idle >= srv_->limits.idle_timeout_ms)
      close();
  }

  void shut() override {
    if (!batch_out_ && !closed_)
      finish_after_writes();
  }

  /// A budget this connection waited for has room again.
  void resume() {
    waiting_ = false;
    on_input();
  }

private:
  size_t line_limit() const {
    return authenticated_ ? max_message_bytes : max_pre_auth_line_bytes;
  }

  void on_written(size_t n) override {
    srv_->release_bytes(static_cast<int64_t>(n));
    update_busy(batch_out_);
    on_input(); // the client read: room for more replies
  }

  void on_close() override {
    if (!batch_out_)
      srv_->release_bytes(held());
  }

  void notify(ec code, const std::string& message) {
    auto line =
      dispatcher::failure(std::nullopt, make_error(code, message)).body;
    line.push_back('\n');
    send_now(line);
  }

  // -- batches ----------------------------------------------------------------

  /// Takes the next batch if nothing stops it, else reads more or closes.
  void on_input() override {
    if (closed_ || batch_out_ || waiting_)
      return;
    if (srv_->stopping)
      return finish_after_writes();
    if (held() >= srv_->limits.reply_bytes_per_connection)
      return; // resumed as the client reads its replies
    size_t complete = carried_ ? 1 : 0;
    for (auto nl = in_.find('\n');
         nl != std::string::npos && complete < max_batch_lines;
         nl = in_.find('\n', nl + 1))
      ++complete;
    if (complete == 0)
      return idle_input();
    auto self = shared_from_this();
    if (held() > small_batch_bytes && !srv_->reply_bytes_free(self)) {
      waiting_ = true;
      return;
    }
    auto granted = srv_->acquire_requests(complete, self);
    if (granted == 0) {
      waiting_ = true;
      return;
    }
    send_batch(granted);
  }

  /// No complete line: read on, or end a line that can no longer be one.
  void idle_input() {
    if (in_.size() > line_limit())
      return send_too_large();
    if (eof_) {
      // The client closed its side: a last line without a newline is
      // still a request, and the socket can still carry its reply.
      if (in_.find_first_not_of(" \t\r") != std::string::npos) {
        in_.push_back('\n');
        return on_input();
      }
      return finish_after_writes();
    }
    wait_readable();
  }

  void send_batch(size_t granted) {
    lines_.clear();
    int64_t reserved = 0;
    bool too_large = false;
    auto start = take_lines(granted, reserved, too_large);
    in_.erase(0, start);
    srv_->release_requests(granted - lines_.size());
    if (!too_large && lines_.size() < max_batch_lines
        && in_.find('\n') == std::string::npos && in_.size() > line_limit())
      too_large = true;
    if (too_large)
      add_too_large(reserved);
    dispatch(reserved, too_large);
    if (in_.size() < read_ahead_bytes || in_.find('\n') == std::string::npos)
      wait_readable();
  }

  /// Prepares up to `granted` lines from the front of the input while
  /// their replies fit the connection's budget (always at least one);
  /// returns where the rest of the input starts.
  size_t take_lines(size_t granted, int64_t& reserved, bool& too_large) {
    auto budget = srv_->limits.reply_bytes_per_connection - held();
    request_order order;
    if (carried_) {
      order.admit(0, scope_of(carried_->req.cmd));
      reserved += reserve(*carried_, 0);
      lines_.push_back(std::move(*carried_));
      carried_.reset();
    }
    size_t start = 0;
    for (auto nl = in_.find('\n');
         nl != std::string::npos && lines_.size() < granted;
         nl = in_.find('\n', start)) {
      if (nl - start > line_limit()) {
        too_large = true;
        break;
      }
      std::string_view text{in_.data() + start, nl - start};
      auto next = prepare(text);
      auto bytes = reserve(next, text.size());
      if (!lines_.empty() && reserved + bytes > budget)
        break; // prepared again, first of the next batch
      start = nl + 1;
      // A line that must see an earlier line's effect starts the next
      // batch: the manager answers a batch's calls as they finish.
      if (!next.blank && !next.req.error
          && !order.admit(lines_.size(), scope_of(next.req.cmd)).empty()) {
        carried_ = std::move(next);
        break;
      }
      reserved += bytes;
      lines_.push_back(std::move(next));
    }
    return start;
  }

  int64_t reserve(const batch_line& line, size_t line_bytes) const {
    return line.blank ? 0 : srv_->estimates.reserve(line.kind, line_bytes);
  }

  /// Parses a line, applying the auth rules in line order. Before auth,
  /// only an `auth` is parsed; anything else is refused from its envelope.
  batch_line prepare(std::string_view line) {
    batch_line result;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      result.blank = true; // blank lines are not requests
      return result;
    }
    auto& req = result.req;
    if (!authenticated_) {
      auto env = peek_envelope(line);
      if (env.action != "auth") {
        req.request_id = std::move(env.request_id);
        req.error = make_error(ec::unauthorized,
                               "send {\"action\":\"auth\",\"api_key\":...} "
                               "first");
        return result;
      }
    }
    req = parse_request(line);
    auto* auth = std::get_if<auth_cmd>(&req.cmd);
    if (!req.error && auth != nullptr) {
      auto was = authenticated_;
      authenticated_ = srv_->disp.keys().allows(auth->api_key);
      if (!authenticated_)
        req.error = make_error(ec::unauthorized, "the API key is not valid");
      // A connection that loses its auth gets a fresh deadline to redo it.
      if (was && !authenticated_)
        auth_deadline_ms_ = steady_now_ms() + srv_->limits.auth_timeout_ms;
    }
    result.kind = kind_of(req);
    return result;
  }

  std::string too_large_message() const {
    if (authenticated_)
      return "a message must be at most 1 MiB; closing the connection";
    return "before auth, a message must be at most "
           + std::to_string(max_pre_auth_line_bytes)
           + " bytes; closing the connection";
  }

  void add_too_large(int64_t& reserved) {
    lines_.emplace_back();
    lines_.back().req.error = make_error(ec::too_large, too_large_message());
    reserved += 1024;
  }

  /// A line beyond the limit with nothing before it: refused, then closed.
  void send_too_large() {
    lines_.clear();
    int64_t reserved = 0;
    add_too_large(reserved);
    dispatch(reserved, true);
  }

  /// Hands the batch to the manager; its outcome comes back on our loop.
  void dispatch(int64_t reserved, bool close_after) {
    batch_out_ = true;
    close_after_batch_ = close_after;
    reserved_ = reserved;
    srv_->hold_bytes(reserved);
    update_busy(true);
    std::vector<api_request> reqs;
    reqs.reserve(lines_.size());
    for (auto& line : lines_)
      if (!line.blank)
        reqs.push_back(std::move(line.req));
    ++srv_->batches;
    auto self = std::static_pointer_cast<tcp_conn>(shared_from_this());
    srv_->disp.send(std::move(reqs), [self](batch_outcome outcome) {
      asio::post(self->loop().ctx, [self, o = std::move(outcome)]() mutable {
        self->answered(std::move(o).render());
      });
    });
  }

  /// The batch's replies: queued for writing in order.
  void answered(std::vector<api_reply> replies) {
    size_t next = 0;
    auto before = held();
    for (auto& line : lines_) {
      if (line.blank)
        continue;
      auto& body = replies[next++].body;
      srv_->estimates.observe(line.kind, body.size());
      body.push_back('\n');
      queue(body);
    }
    srv_->release_requests(lines_.size() - (close_after_batch_ ? 1 : 0));
    // What the replies turned out to need instead of their reservation.
    srv_->hold_bytes(held() - before - reserved_);
    lines_.clear();
    batch_out_ = false;
    --srv_->batches;
    if (closed_) {
      srv_->release_bytes(held());
      return;
    }
    write_more();
    if (close_after_batch_)
      finish_after_writes();
    else
      on_input();
  }

  std::shared_ptr<impl> srv_;
  /// A prepared line that starts the next batch.
  std::optional<batch_line> carried_;
  std::vector<batch_line> lines_;
  int64_t reserved_ = 0;
  bool batch_out_ = false;
  bool close_after_batch_ = false;
  bool waiting_ = false;
  bool authenticated_;
  int64_t auth_deadline_ms_;
};

} // namespace

// -- the server ---------------------------------------------------------------

tcp_server::impl::impl(dispatcher& d, Poco::Net::ServerSocket s,
                       size_t max_conns, tcp_limits lim,
                       std::shared_ptr<io_loops> l)
  : loop_server(
    std::move(s), std::move(l),
    std::clamp<int64_t>(
      std::min<int64_t>(lim.idle_timeout_ms > 0 ? lim.idle_timeout_ms : 1'000,
                        lim.auth_timeout_ms)
        / 4,
      5, 250)),
    disp(d),
    limits(lim),
    max_connections(max_conns) {
  // nop
}

std::shared_ptr<loop_conn> tcp_server::impl::make_conn(loop_state& loop,
                                                       tcp::socket socket) {
  if (open() >= max_connections && !evict_one()) {
    // Every connection is busy: say so and close.
    auto line = dispatcher::failure(
                  std::nullopt,
                  make_error(ec::overloaded,
                             "the server is at its connection limit and every "
                             "connection is busy; try again later"))
                  .body
                + "\n";
    asio::error_code ignored;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(line), ignored);
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    return nullptr;
  }
  return std::make_shared<tcp_conn>(self(), loop, std::move(socket));
}

size_t tcp_server::impl::acquire_requests(size_t n, const conn_ptr& waiter) {
  std::lock_guard<std::mutex> guard{mtx};
  if (in_flight >= max_in_flight_total) {
    waiters.push_back(waiter);
    has_waiters = true;
    return 0;
  }
  auto granted = std::min(n, max_in_flight_total - in_flight);
  in_flight += granted;
  return granted;
}

void tcp_server::impl::release_requests(size_t n) {
  if (n == 0)
    return;
  std::unique_lock<std::mutex> guard{mtx};
  in_flight -= n;
  wake_waiters(guard);
}

bool tcp_server::impl::reply_bytes_free(const conn_ptr& waiter) {
  if (reply_bytes.load() < limits.reply_bytes_total)
    return true;
  std::lock_guard<std::mutex> guard{mtx};
  waiters.push_back(waiter);
  has_waiters = true;
  return false;
}

void tcp_server::impl::release_bytes(int64_t n) {
  if (n <= 0)
    return;
  reply_bytes -= n;
  if (!has_waiters)
    return;
  std::unique_lock<std::mutex> guard{mtx};
  wake_waiters(guard);
}

void tcp_server::impl::wake_waiters(std::unique_lock<std::mutex>& guard) {
  if (waiters.empty())
    return;
  auto woken = std::move(waiters);
  waiters.clear();
  has_waiters = false;
  guard.unlock();
  for (auto& w : woken)
    if (auto c = std::static_pointer_cast<tcp_conn>(w.lock()))
      asio::post(c->loop().ctx, [c] { c->resume(); });
}

tcp_server::tcp_server(dispatcher& d, Poco::Net::ServerSocket socket,
                       int max_connections, tcp_limits limits,
                       std::shared_ptr<io_loops> loops)
  : impl_(std::make_shared<impl>(d, std::move(socket),
                                 static_cast<size_t>(max_connections), limits,
                                 std::move(loops))) {
  // nop
}

tcp_server::~tcp_server() {
  stop();
  impl_->join_own_loops();
}

uint16_t tcp_server::port() const {
  return impl_->port();
}

void tcp_server::start() {
  impl_->start();
}

void tcp_server::stop() {
  // Every batch in flight comes back (the manager always answers), and
  // every connection closes once written, or after `stop_write_ms`.
  impl_->stop([this] { return impl_->batches == 0; });
}

} // namespace tlm
