#include "api/tcp_server.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <vector>

#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServerConnection.h>
#include <Poco/Net/TCPServerConnectionFactory.h>

namespace tlm {

namespace {

/// Replies of one batch of lines, filled in by whichever thread answers.
struct batch_replies {
  std::mutex mtx;
  std::condition_variable done;
  std::vector<std::string> replies;
  size_t missing = 0;

  void put(size_t index, std::string reply) {
    std::lock_guard<std::mutex> guard{mtx};
    replies[index] = std::move(reply);
    if (--missing == 0)
      done.notify_one();
  }

  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    done.wait(guard, [this] { return missing == 0; });
  }
};

/// Requests in flight at once: of one connection, and of all of them. More
/// wait in the sockets, which is free. CAF 0.17 keeps an actor's pending
/// requests in a flat map whose cost per reply grows with its size, so tens
/// of thousands in flight cost more than they bring (16k in flight: 60k
/// creates/s; 1k: 229k/s).
constexpr size_t max_batch_lines = 512;
constexpr size_t max_in_flight_total = 2048;

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

class tcp_connection : public Poco::Net::TCPServerConnection {
public:
  tcp_connection(const Poco::Net::StreamSocket& socket, dispatcher& d,
                 std::shared_ptr<std::atomic<bool>> stopping,
                 std::shared_ptr<in_flight_budget> budget)
    : TCPServerConnection(socket),
      dispatcher_(d),
      stopping_(std::move(stopping)),
      budget_(std::move(budget)),
      authenticated_(d.keys().empty()) {
    // nop
  }

  void run() override {
    auto& sock = socket();
    sock.setNoDelay(true);
    // Wakes up now and then to notice a shutdown between batches.
    sock.setReceiveTimeout(Poco::Timespan(0, 200'000));
    std::vector<char> buf(256 * 1024);
    std::string pending;
    try {
      while (!*stopping_) {
        int n;
        try {
          n = sock.receiveBytes(buf.data(), static_cast<int>(buf.size()));
        } catch (const Poco::TimeoutException&) {
          continue;
        }
        if (n <= 0) {
          // The client closed its side: a last line without a newline is
          // still a request, and the socket can still carry its reply.
          if (pending.find_first_not_of(" \t\r") != std::string::npos) {
            pending.push_back('\n');
            while (serve_batch(pending)
                   && pending.find('\n') != std::string::npos)
              ;
          }
          return;
        }
        pending.append(buf.data(), static_cast<size_t>(n));
        do {
          if (!serve_batch(pending))
            return;
        } while (pending.find('\n') != std::string::npos && !*stopping_);
      }
    } catch (const Poco::Exception&) {
      // The client went away mid-write; nothing left to answer.
    }
  }

private:
  /// Answers up to `max_batch_lines` complete lines of `pending`, as many
  /// as the shared budget grants (the rest wait for the next batch); false
  /// to close.
  bool serve_batch(std::string& pending) {
    size_t complete = 0;
    for (auto nl = pending.find('\n');
         nl != std::string::npos && complete < max_batch_lines;
         nl = pending.find('\n', nl + 1))
      ++complete;
    size_t granted = complete > 0 ? budget_->acquire_up_to(complete) : 0;
    std::vector<std::string_view> lines;
    size_t start = 0;
    bool too_large = false;
    for (auto nl = pending.find('\n');
         nl != std::string::npos && lines.size() < granted;
         nl = pending.find('\n', start)) {
      if (nl - start > max_message_bytes) {
        too_large = true;
        break;
      }
      lines.emplace_back(pending.data() + start, nl - start);
      start = nl + 1;
    }
    if (!too_large && lines.size() == complete && complete < max_batch_lines
        && pending.size() - start > max_message_bytes)
      too_large = true;
    auto batch = std::make_shared<batch_replies>();
    batch->replies.resize(lines.size() + (too_large ? 1 : 0));
    batch->missing = batch->replies.size();
    for (size_t i = 0; i < lines.size(); ++i)
      serve_line(lines[i], i, batch);
    if (too_large)
      batch->put(lines.size(),
                 dispatcher::failure(std::nullopt,
                                     make_error(ec::too_large,
                                                "a message must be at most "
                                                "1 MiB; closing the "
                                                "connection"))
                   .body);
    batch->wait();
    budget_->release(granted);
    pending.erase(0, start);
    std::string out;
    for (auto& reply : batch->replies)
      if (!reply.empty())
        out.append(reply).push_back('\n');
    send_all(out);
    return !too_large;
  }

  void serve_line(std::string_view line, size_t index,
                  const std::shared_ptr<batch_replies>& batch) {
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      batch->put(index, {}); // blank lines are not requests
      return;
    }
    auto req = parse_request(line);
    if (!req.error && req.verb == action::auth) {
      authenticated_ = dispatcher_.keys().allows(req.api_key);
      if (!authenticated_)
        req.error = make_error(ec::unauthorized, "the API key is not valid");
    } else if (!authenticated_) {
      req.error = make_error(ec::unauthorized,
                             "send {\"action\":\"auth\",\"api_key\":...} "
                             "first");
    }
    dispatcher_.call(
      std::move(req),
      [batch, index](api_reply reply) {
        batch->put(index, std::move(reply.body));
      },
      lane_);
  }

  void send_all(const std::string& out) {
    size_t sent = 0;
    while (sent < out.size()) {
      auto n = socket().sendBytes(out.data() + sent,
                                  static_cast<int>(out.size() - sent));
      if (n <= 0)
        throw Poco::Net::NetException("connection closed");
      sent += static_cast<size_t>(n);
    }
  }

  dispatcher& dispatcher_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  std::shared_ptr<in_flight_budget> budget_;
  bool authenticated_;
  size_t lane_ = dispatcher::next_lane();
};

class connection_factory : public Poco::Net::TCPServerConnectionFactory {
public:
  connection_factory(dispatcher& d, std::shared_ptr<std::atomic<bool>> stop)
    : dispatcher_(d),
      stopping_(std::move(stop)),
      budget_(std::make_shared<in_flight_budget>(max_in_flight_total)) {
    // nop
  }

  Poco::Net::TCPServerConnection*
  createConnection(const Poco::Net::StreamSocket& socket) override {
    return new tcp_connection(socket, dispatcher_, stopping_, budget_);
  }

private:
  dispatcher& dispatcher_;
  std::shared_ptr<std::atomic<bool>> stopping_;
  std::shared_ptr<in_flight_budget> budget_;
};

} // namespace

tcp_server::tcp_server(dispatcher& d, Poco::Net::ServerSocket socket,
                       int max_connections)
  : pool_(2, max_connections + 1),
    stopping_(std::make_shared<std::atomic<bool>>(false)) {
  auto params = new Poco::Net::TCPServerParams;
  params->setMaxThreads(max_connections);
  params->setMaxQueued(256);
  server_ = std::make_unique<Poco::Net::TCPServer>(
    new connection_factory(d, stopping_), pool_, socket, params);
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
  pool_.joinAll();
}

} // namespace tlm
