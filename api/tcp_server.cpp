#include "api/tcp_server.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <variant>
#include <vector>

#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServerConnection.h>
#include <Poco/Net/TCPServerConnectionFactory.h>

#include "api/envelope.hpp"
#include "api/request_order.hpp"

namespace tlm {

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

/// Replies of one batch of lines, filled in by whichever thread answers.
struct batch_replies {
  std::mutex mtx;
  std::condition_variable done;
  std::vector<std::string> replies;
  std::vector<bool> answered;
  size_t missing = 0;
  /// The request the connection's thread waits for; none: the last one.
  std::optional<size_t> awaited;

  explicit batch_replies(size_t n) : replies(n), answered(n), missing(n) {
    // nop
  }

  void put(size_t index, std::string reply) {
    std::lock_guard<std::mutex> guard{mtx};
    replies[index] = std::move(reply);
    answered[index] = true;
    if (--missing == 0 || awaited == index)
      done.notify_one();
  }

  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    done.wait(guard, [this] { return missing == 0; });
  }

  /// Waits until request `index` is answered.
  void wait_for(size_t index) {
    std::unique_lock<std::mutex> guard{mtx};
    awaited = index;
    done.wait(guard, [this, index] { return answered[index]; });
    awaited.reset();
  }
};

/// Requests in flight at once: of one connection, and of all of them. More
/// wait in the sockets, which is free. CAF 0.17 keeps an actor's pending
/// requests in a flat map whose cost per reply grows with its size, so tens
/// of thousands in flight cost more than they bring (16k in flight: 60k
/// creates/s; 1k: 229k/s).
constexpr size_t max_batch_lines = 512;
constexpr size_t max_in_flight_total = 2048;

/// Replies go out in writes of about this size, each reply freed once it
/// is copied into one: a batch never exists twice in memory.
constexpr size_t write_chunk_bytes = 64 * 1024;

/// How often a blocked read or write looks at the clock, the shutdown flag
/// and its deadlines (`stop` also wakes readers at once).
constexpr int64_t poll_ms = 1'000;

/// A counting semaphore over the requests all connections have in flight,
/// taken a batch at a time (one wake-up per batch, not per request). Never
/// a deadlock: whatever holds a slot is a request the manager will answer.
class in_flight_budget {
public:
  explicit in_flight_budget(size_t limit) : limit_(limit) {
    // nop
  }

  /// Waits for a free slot, then takes up to `n` (at least one).
  size_t acquire_up_to(size_t n) {
    std::unique_lock<std::mutex> guard{mtx_};
    free_.wait(guard, [this] { return used_ < limit_; });
    auto granted = std::min(n, limit_ - used_);
    used_ += granted;
    return granted;
  }

  void release(size_t n) {
    if (n == 0)
      return;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      used_ -= n;
    }
    free_.notify_all();
  }

private:
  std::mutex mtx_;
  std::condition_variable free_;
  size_t used_ = 0;
  size_t limit_;
};

/// A batch whose replies may need at most this many bytes never waits for
/// the shared reply budget (it is still counted): clients that read their
/// replies keep being served while non-reading ones fill the budget, and
/// all connections together can add at most this much each.
constexpr int64_t small_batch_bytes = 64 * 1024;

/// The reply bytes all connections hold. A batch reserves what its replies
/// may need before it is sent to the manager and gives the bytes back as
/// its client reads them; whatever holds bytes is a batch being answered or
/// written, and a write that stalls ends at the idle timeout.
class byte_budget {
public:
  explicit byte_budget(int64_t limit) : limit_(limit) {
    // nop
  }

  /// Waits until `n` more bytes fit, or nothing is held (a batch larger
  /// than the whole budget then runs alone); false when stopping.
  bool acquire(int64_t n, const std::atomic<bool>& stopping) {
    std::unique_lock<std::mutex> guard{mtx_};
    while (n > small_batch_bytes && used_ > 0 && used_ + n > limit_) {
      if (stopping)
        return false;
      free_.wait_for(guard, std::chrono::milliseconds(poll_ms));
    }
    used_ += n;
    return true;
  }

  /// Takes bytes a batch's replies turned out to need beyond its
  /// reservation: they exist already, so this never waits.
  void force(int64_t n) {
    std::lock_guard<std::mutex> guard{mtx_};
    used_ += n;
  }

  void release(int64_t n) {
    if (n <= 0)
      return;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      used_ -= n;
    }
    free_.notify_all();
  }

private:
  std::mutex mtx_;
  std::condition_variable free_;
  int64_t used_ = 0;
  int64_t limit_;
};

/// How large a reply may be, by what the request asks for.
enum class reply_kind : uint8_t {
  small, ///< failures, health, auth, revoke, job
  lease, ///< get, renew, exchange: a stored lease
  page,  ///< list
  echo,  ///< create: the lease made from this very line
};

/// Reply sizes to reserve before the replies exist: the largest seen so
/// far of each kind (shared by all connections, never shrinking), and at
/// least a floor. A create's reply repeats its request, so its line bounds
/// it. The first batch of large leases after a start can exceed its
/// reservation once; it is counted when it arrives.
class reply_estimates {
public:
  int64_t reserve(reply_kind kind, size_t line_bytes) const {
    if (kind == reply_kind::echo)
      return static_cast<int64_t>(line_bytes) + 1024;
    auto i = static_cast<size_t>(kind);
    return std::max(floors_[i], seen_[i].load(std::memory_order_relaxed));
  }

  void observe(reply_kind kind, size_t bytes) {
    auto& seen = seen_[static_cast<size_t>(kind)];
    auto n = static_cast<int64_t>(bytes);
    auto old = seen.load(std::memory_order_relaxed);
    while (n > old && !seen.compare_exchange_weak(old, n))
      ;
    // A create's reply is a lease that a get will read later.
    if (kind == reply_kind::echo)
      observe(reply_kind::lease, bytes);
  }

private:
  static constexpr std::array<int64_t, 4> floors_{1024, 16 * 1024, 64 * 1024,
                                                  0};
  std::array<std::atomic<int64_t>, 4> seen_{};
};

/// The size class of a command's reply.
struct reply_kind_of {
  reply_kind operator()(const create_cmd&) const {
    return reply_kind::echo;
  }
  reply_kind operator()(const get_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const renew_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const exchange_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const list_cmd&) const {
    return reply_kind::page;
  }
  template <class Command>
  reply_kind operator()(const Command&) const {
    return reply_kind::small;
  }
};

reply_kind kind_of(const api_request& req) {
  return req.error ? reply_kind::small : std::visit(reply_kind_of{}, req.cmd);
}

} // namespace

/// What the registry sees of a connection.
struct tcp_connection_slot {
  Poco::Net::StreamSocket socket;
  std::atomic<int64_t> last_active_ms{0};
  /// Requests in flight or replies being written: never evicted.
  std::atomic<bool> busy{false};
  std::atomic<bool> evicted{false};
};

/// The connections being served, so that a new client finds a slot when
/// `max_connections` are open (the longest-idle one is closed for it), and
/// so that `stop` wakes every reader at once.
class connection_registry {
public:
  explicit connection_registry(size_t limit) : limit_(limit) {
    // nop
  }

  /// At accept: true when the new connection may be served, after evicting
  /// the longest-idle one if the limit is reached; false when every open
  /// connection is busy.
  bool admit() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (open_ - evicting_ < limit_) {
      ++open_;
      return true;
    }
    tcp_connection_slot* oldest = nullptr;
    for (auto* slot : live_)
      if (!slot->busy && !slot->evicted
          && (!oldest || slot->last_active_ms < oldest->last_active_ms))
        oldest = slot;
    if (!oldest)
      return false;
    oldest->evicted = true;
    ++evicting_;
    wake(*oldest);
    ++open_;
    return true;
  }

  void enter(tcp_connection_slot& slot) {
    std::lock_guard<std::mutex> guard{mtx_};
    live_.push_back(&slot);
  }

  /// Called once by every admitted connection.
  void leave(tcp_connection_slot& slot) {
    std::lock_guard<std::mutex> guard{mtx_};
    live_.erase(std::find(live_.begin(), live_.end(), &slot));
    if (slot.evicted)
      --evicting_;
    --open_;
  }

  void wake_all() {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto* slot : live_)
      wake(*slot);
  }

private:
  /// Ends the slot's blocked read; its thread then looks at its flags.
  static void wake(tcp_connection_slot& slot) {
    try {
      slot.socket.shutdownReceive();
    } catch (const Poco::Exception&) {
      // Already closed by its client: its thread is on its way out.
    }
  }

  std::mutex mtx_;
  std::vector<tcp_connection_slot*> live_;
  size_t open_ = 0;
  size_t evicting_ = 0;
  size_t limit_;
};

namespace {

/// What all connections share.
struct shared_state {
  dispatcher& disp;
  tcp_limits limits;
  std::shared_ptr<std::atomic<bool>> stopping;
  std::shared_ptr<connection_registry> registry;
  in_flight_budget requests{max_in_flight_total};
  byte_budget reply_bytes;
  reply_estimates estimates;

  shared_state(dispatcher& d, tcp_limits l,
               std::shared_ptr<std::atomic<bool>> stop,
               std::shared_ptr<connection_registry> reg)
    : disp(d),
      limits(l),
      stopping(std::move(stop)),
      registry(std::move(reg)),
      reply_bytes(l.reply_bytes_total) {
    // nop
  }
};

/// A line of a batch, ready to send to the manager.
struct batch_line {
  api_request req;
  bool blank = false;
  reply_kind kind = reply_kind::small;
};

class tcp_connection : public Poco::Net::TCPServerConnection {
public:
  tcp_connection(const Poco::Net::StreamSocket& socket,
                 std::shared_ptr<shared_state> shared)
    : TCPServerConnection(socket),
      shared_(std::move(shared)),
      authenticated_(shared_->disp.keys().empty()),
      auth_deadline_ms_(now_ms() + shared_->limits.auth_timeout_ms) {
    slot_.socket = socket;
    touch();
    shared_->registry->enter(slot_);
  }

  ~tcp_connection() override {
    shared_->registry->leave(slot_);
  }

  void run() override {
    auto& sock = socket();
    sock.setNoDelay(true);
    sock.setSendTimeout(Poco::Timespan(poll_ms * 1000));
    // Not value-initialized: an idle connection touches none of it.
    constexpr size_t buf_size = 256 * 1024;
    std::unique_ptr<char[]> buf{new char[buf_size]};
    std::string pending;
    try {
      while (!closing()) {
        sock.setReceiveTimeout(Poco::Timespan(wait_ms() * 1000));
        int n;
        try {
          n = sock.receiveBytes(buf.get(), static_cast<int>(buf_size));
        } catch (const Poco::TimeoutException&) {
          continue;
        }
        if (n <= 0) {
          if (*shared_->stopping || slot_.evicted)
            continue; // woken by the registry: `closing` says why
          serve_last_line(pending);
          return;
        }
        touch();
        pending.append(buf.get(), static_cast<size_t>(n));
        do {
          if (!serve_batch(pending))
            return;
        } while (pending.find('\n') != std::string::npos
                 && !*shared_->stopping);
      }
    } catch (const Poco::Exception&) {
      // The client went away mid-write; nothing left to answer.
    }
  }

private:
  // -- deadlines --------------------------------------------------------------

  void touch() {
    slot_.last_active_ms = now_ms();
  }

  /// True when the connection should close now, after telling its client
  /// why when that helps it.
  bool closing() {
    if (*shared_->stopping)
      return true;
    if (slot_.evicted) {
      notify(ec::overloaded, "closing this idle connection: the server "
                             "reached its connection limit");
      return true;
    }
    auto now = now_ms();
    if (!authenticated_ && now >= auth_deadline_ms_) {
      notify(ec::unauthorized,
             "no valid auth within "
               + std::to_string(shared_->limits.auth_timeout_ms)
               + " ms; closing the connection");
      return true;
    }
    auto idle = shared_->limits.idle_timeout_ms;
    return idle > 0 && now - slot_.last_active_ms >= idle;
  }

  /// How long the next read may block before `closing` must look again.
  int64_t wait_ms() const {
    auto now = now_ms();
    auto wait = poll_ms;
    if (!authenticated_)
      wait = std::min(wait, auth_deadline_ms_ - now);
    if (auto idle = shared_->limits.idle_timeout_ms; idle > 0)
      wait = std::min(wait, slot_.last_active_ms + idle - now);
    return std::max<int64_t>(wait, 1);
  }

  /// One failure line that answers no request; a client that does not read
  /// it is not waited for.
  void notify(ec code, const std::string& message) {
    auto line =
      dispatcher::failure(std::nullopt, make_error(code, message)).body;
    line.push_back('\n');
    try {
      send_all(line.data(), line.size(), poll_ms);
    } catch (const Poco::Exception&) {
      // Gone already.
    }
  }

  // -- batches ----------------------------------------------------------------

  size_t line_limit() const {
    return authenticated_ ? max_message_bytes : max_pre_auth_line_bytes;
  }

  /// The client closed its side: a last line without a newline is still a
  /// request, and the socket can still carry its reply.
  void serve_last_line(std::string& pending) {
    if (pending.find_first_not_of(" \t\r") == std::string::npos)
      return;
    pending.push_back('\n');
    while (serve_batch(pending) && pending.find('\n') != std::string::npos)
      ;
  }

  /// Answers up to `max_batch_lines` complete lines of `pending`, as many
  /// as the shared request budget grants and as fit the connection's reply
  /// budget (the rest wait for the next batch); false to close.
  bool serve_batch(std::string& pending) {
    slot_.busy = true;
    size_t complete = 0;
    for (auto nl = pending.find('\n');
         nl != std::string::npos && complete < max_batch_lines;
         nl = pending.find('\n', nl + 1))
      ++complete;
    auto granted = complete > 0 ? shared_->requests.acquire_up_to(complete) : 0;
    std::vector<batch_line> lines;
    int64_t reserved = 0;
    bool too_large = false;
    auto start = take_lines(pending, granted, lines, reserved, too_large);
    shared_->requests.release(granted - lines.size());
    if (!too_large && lines.size() == complete && complete < max_batch_lines
        && pending.size() - start > line_limit())
      too_large = true;
    if (too_large) {
      lines.emplace_back();
      lines.back().req.error = make_error(ec::too_large, too_large_message());
      reserved += 1024;
    }
    if (lines.empty()) {
      slot_.busy = false;
      return true;
    }
    if (!shared_->reply_bytes.acquire(reserved, *shared_->stopping)) {
      shared_->requests.release(lines.size() - (too_large ? 1 : 0));
      slot_.busy = false;
      return false;
    }
    auto batch = std::make_shared<batch_replies>(lines.size());
    request_order order;
    for (size_t i = 0; i < lines.size(); ++i) {
      // Pipelined requests see the effects of the earlier ones they could
      // depend on (api/request_order.hpp); the rest run at once.
      if (!lines[i].blank && !lines[i].req.error)
        for (auto earlier : order.admit(i, scope_of(lines[i].req.cmd)))
          batch->wait_for(earlier);
      serve_line(lines[i], i, batch);
    }
    batch->wait();
    shared_->requests.release(lines.size() - (too_large ? 1 : 0));
    pending.erase(0, start);
    write_replies(lines, batch->replies, reserved);
    slot_.busy = false;
    return !too_large;
  }

  std::string too_large_message() const {
    if (authenticated_)
      return "a message must be at most 1 MiB; closing the connection";
    return "before auth, a message must be at most "
           + std::to_string(max_pre_auth_line_bytes)
           + " bytes; closing the connection";
  }

  /// Prepares up to `granted` lines from the front of `pending` while
  /// their replies fit the connection's budget (always at least one);
  /// returns where the next batch starts.
  size_t take_lines(const std::string& pending, size_t granted,
                    std::vector<batch_line>& lines, int64_t& reserved,
                    bool& too_large) {
    size_t start = 0;
    for (auto nl = pending.find('\n');
         nl != std::string::npos && lines.size() < granted;
         nl = pending.find('\n', start)) {
      if (nl - start > line_limit()) {
        too_large = true;
        break;
      }
      std::string_view line{pending.data() + start, nl - start};
      auto next = prepare(line);
      auto bytes = next.blank
                     ? 0
                     : shared_->estimates.reserve(next.kind, line.size());
      if (!lines.empty()
          && reserved + bytes > shared_->limits.reply_bytes_per_connection)
        break; // prepared again, first of the next batch
      reserved += bytes;
      lines.push_back(std::move(next));
      start = nl + 1;
    }
    return start;
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
      authenticated_ = shared_->disp.keys().allows(auth->api_key);
      if (!authenticated_)
        req.error = make_error(ec::unauthorized, "the API key is not valid");
      // A connection that loses its auth gets a fresh deadline to redo it.
      if (was && !authenticated_)
        auth_deadline_ms_ = now_ms() + shared_->limits.auth_timeout_ms;
    }
    result.kind = kind_of(req);
    return result;
  }

  void serve_line(batch_line& line, size_t index,
                  const std::shared_ptr<batch_replies>& batch) {
    if (line.blank) {
      batch->put(index, {});
      return;
    }
    shared_->disp.call(
      std::move(line.req),
      [batch, index](api_reply reply) {
        batch->put(index, std::move(reply.body));
      },
      lane_);
  }

  /// Writes the replies in order, giving their bytes back to the shared
  /// budget as the client takes them.
  void write_replies(const std::vector<batch_line>& lines,
                     std::vector<std::string>& replies, int64_t reserved) {
    int64_t total = 0;
    for (size_t i = 0; i < replies.size(); ++i) {
      total += static_cast<int64_t>(replies[i].size()) + 1;
      if (!lines[i].blank)
        shared_->estimates.observe(lines[i].kind, replies[i].size());
    }
    if (total > reserved) {
      shared_->reply_bytes.force(total - reserved);
      reserved = total;
    }
    std::string out;
    auto flush = [&] {
      send_all(out.data(), out.size(), shared_->limits.idle_timeout_ms);
      auto freed = std::min<int64_t>(reserved,
                                     static_cast<int64_t>(out.size()));
      shared_->reply_bytes.release(freed);
      reserved -= freed;
      out.clear();
    };
    try {
      for (auto& reply : replies) {
        if (reply.empty())
          continue;
        out.append(reply).push_back('\n');
        std::string{}.swap(reply);
        if (out.size() >= write_chunk_bytes)
          flush();
      }
      if (!out.empty())
        flush();
    } catch (...) {
      shared_->reply_bytes.release(reserved);
      throw;
    }
    shared_->reply_bytes.release(reserved);
  }

  /// Sends everything, or throws once the client has taken no byte for
  /// `stall_ms` (0: never; on shutdown, a second).
  void send_all(const char* data, size_t size, int64_t stall_ms) {
    size_t sent = 0;
    auto progress = now_ms();
    while (sent < size) {
      int n = 0;
      try {
        n = socket().sendBytes(data + sent, static_cast<int>(std::min<size_t>(
                                              size - sent, INT_MAX)));
      } catch (const Poco::TimeoutException&) {
        auto stalled = now_ms() - progress;
        if ((stall_ms > 0 && stalled >= stall_ms)
            || (*shared_->stopping && stalled >= poll_ms))
          throw Poco::Net::NetException("the client stopped reading");
        continue;
      }
      if (n <= 0)
        throw Poco::Net::NetException("connection closed");
      sent += static_cast<size_t>(n);
      progress = now_ms();
      touch();
    }
  }

  std::shared_ptr<shared_state> shared_;
  tcp_connection_slot slot_;
  bool authenticated_;
  int64_t auth_deadline_ms_;
  size_t lane_ = dispatcher::next_lane();
};

class connection_factory : public Poco::Net::TCPServerConnectionFactory {
public:
  explicit connection_factory(std::shared_ptr<shared_state> shared)
    : shared_(std::move(shared)) {
    // nop
  }

  Poco::Net::TCPServerConnection*
  createConnection(const Poco::Net::StreamSocket& socket) override {
    return new tcp_connection(socket, shared_);
  }

private:
  std::shared_ptr<shared_state> shared_;
};

/// Asks the registry at accept, before Poco queues the connection.
class admission_filter : public Poco::Net::TCPServerConnectionFilter {
public:
  explicit admission_filter(std::shared_ptr<connection_registry> registry)
    : registry_(std::move(registry)) {
    // nop
  }

  bool accept(const Poco::Net::StreamSocket&) override {
    return registry_->admit();
  }

private:
  std::shared_ptr<connection_registry> registry_;
};

} // namespace

tcp_server::tcp_server(dispatcher& d, Poco::Net::ServerSocket socket,
                       int max_connections, tcp_limits limits)
  : pool_(2, max_connections + 1),
    stopping_(std::make_shared<std::atomic<bool>>(false)),
    registry_(std::make_shared<connection_registry>(
      static_cast<size_t>(max_connections))) {
  auto params = new Poco::Net::TCPServerParams;
  params->setMaxThreads(max_connections);
  // Admission keeps the queue short (at most the connections being
  // evicted); a full queue would close new clients without a word.
  params->setMaxQueued(max_connections + 64);
  auto shared = std::make_shared<shared_state>(d, limits, stopping_, registry_);
  server_ = std::make_unique<Poco::Net::TCPServer>(
    new connection_factory(std::move(shared)), pool_, socket, params);
  server_->setConnectionFilter(new admission_filter(registry_));
}

tcp_server::~tcp_server() {
  stop();
}

uint16_t tcp_server::port() const {
  return server_->port();
}

void tcp_server::start() {
  server_->start();
}

void tcp_server::stop() {
  if (stopping_->exchange(true))
    return;
  server_->stop();
  registry_->wake_all();
  pool_.joinAll();
}

} // namespace tlm
