// tlm_bench: load generator for tlmd.
//
// Drives tlmd's TCP API (one JSON object a line, pipelined) or its HTTP API
// (POST /v1/actions over keep-alive connections) with create, get, revoke
// or mixed traffic and prints one summary line per run. For comparison it
// also drives etcd's HTTP/JSON gateway with lease grants (--proto etcd).
// Only the standard library and POSIX sockets, so it builds wherever the
// daemon builds.

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using bench_clock = std::chrono::steady_clock;
using time_point = bench_clock::time_point;

// How long a run still waits for replies in flight once it stops sending.
constexpr auto reply_grace = std::chrono::seconds{5};

constexpr auto connect_timeout = std::chrono::seconds{5};

// The fill has one job, creating leases fast: it uses the shape of the
// standard pipelined TCP scenario, whatever the measured run uses.
constexpr int fill_connections = 4;
constexpr int fill_pipeline = 256;

// How long --start-on-stdin waits for its go line.
constexpr auto start_line_timeout = std::chrono::seconds{120};

constexpr std::string_view usage = R"(usage: tlm_bench --port P [options]
  --host H            daemon address (default 127.0.0.1)
  --port P            port of the API chosen by --proto (required)
  --proto P           tcp: TCP JSON lines (default); http: HTTP POST
                      /v1/actions; etcd: etcd's HTTP/JSON gateway, POST
                      /v3/lease/grant with {"TTL":<--ttl in s>}, a 200
                      reply counts as a success
  --action A          create | get | revoke | mixed (50% create, 40% get,
                      10% health); revoke revokes each pool lease once
                      (so at most --pool requests); with --proto etcd only
                      grant, its default
  --connections N     concurrent connections, one thread each (default 4)
  --pipeline D        TCP requests in flight per connection (default 1;
                      HTTP always sends one at a time)
  --requests TOTAL    stop after this many requests (default 100000)
  --duration-s S      ... or after S seconds, whichever comes first (10)
  --ttl MS            ttl of leases created by the run (default 60000)
  --pool N            leases created before a get/revoke/mixed run (default
                      1000; over TCP created pipelined, like the fill)
  --fill N            create N leases over pipelined TCP before the run
  --fill-ttl MS       ttl of fill and pool leases (default 3600000)
  --fill-port P       TCP port for --fill (default --port with --proto tcp)
  --fill-timeout-s S  bound on the fill, and on the pool (default 60)
  --start-on-stdin 1  after the fill and the pool, print "ready" and start
                      the measured run when a line comes on stdin (within
                      120 s), so that several benches measure together
Exit status: 0 if every request succeeded, 1 if any failed (or none
succeeded), 2 on bad usage or when the daemon cannot be reached.
)";

// -- options ------------------------------------------------------------------

enum class protocol { tcp, http, etcd };
enum class action { create, get, revoke, mixed, grant };

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  protocol proto = protocol::tcp;
  action act = action::create;
  int connections = 4;
  int pipeline = 1;
  uint64_t requests = 100000;
  double duration_s = 10;
  uint64_t ttl_ms = 60000;
  uint64_t pool = 1000;
  uint64_t fill = 0;
  uint64_t fill_ttl_ms = 3600000;
  uint16_t fill_port = 0;
  double fill_timeout_s = 60;
  bool start_on_stdin = false;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::cerr << "tlm_bench: " << what << "\n\n" << usage;
  std::exit(2);
}

template <class T>
T parse_number(std::string_view name, std::string_view text, T min, T max) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min
      || value > max)
    usage_error("bad value for " + std::string{name} + ": "
                + std::string{text});
  return value;
}

options parse_options(int argc, char** argv) {
  options opts;
  for (int i = 1; i < argc; i += 2) {
    std::string_view name = argv[i];
    if (name == "--help" || name == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    if (i + 1 >= argc)
      usage_error("missing value for " + std::string{name});
    std::string_view value = argv[i + 1];
    auto port = [&] { return parse_number<uint16_t>(name, value, 1, 65535); };
    auto count = [&] {
      return parse_number<uint64_t>(name, value, 0, UINT64_MAX);
    };
    auto seconds = [&] {
      return parse_number<double>(name, value, 0.001, 86400);
    };
    if (name == "--host")
      opts.host = value;
    else if (name == "--port")
      opts.port = port();
    else if (name == "--proto" && value == "tcp")
      opts.proto = protocol::tcp;
    else if (name == "--proto" && value == "http")
      opts.proto = protocol::http;
    else if (name == "--proto" && value == "etcd")
      opts.proto = protocol::etcd;
    else if (name == "--action" && value == "create")
      opts.act = action::create;
    else if (name == "--action" && value == "get")
      opts.act = action::get;
    else if (name == "--action" && value == "revoke")
      opts.act = action::revoke;
    else if (name == "--action" && value == "mixed")
      opts.act = action::mixed;
    else if (name == "--action" && value == "grant")
      opts.act = action::grant;
    else if (name == "--connections")
      opts.connections = parse_number<int>(name, value, 1, 10000);
    else if (name == "--pipeline")
      opts.pipeline = parse_number<int>(name, value, 1, 1000000);
    else if (name == "--requests")
      opts.requests = parse_number<uint64_t>(name, value, 1, UINT64_MAX);
    else if (name == "--duration-s")
      opts.duration_s = seconds();
    else if (name == "--ttl")
      opts.ttl_ms = count();
    else if (name == "--pool")
      opts.pool = parse_number<uint64_t>(name, value, 1, 100000000);
    else if (name == "--fill")
      opts.fill = count();
    else if (name == "--fill-ttl")
      opts.fill_ttl_ms = count();
    else if (name == "--fill-port")
      opts.fill_port = port();
    else if (name == "--fill-timeout-s")
      opts.fill_timeout_s = seconds();
    else if (name == "--start-on-stdin")
      opts.start_on_stdin = parse_number<int>(name, value, 0, 1) == 1;
    else
      usage_error("unknown option or value: " + std::string{name} + " "
                  + std::string{value});
  }
  if (opts.port == 0)
    usage_error("--port is required");
  if (opts.proto == protocol::etcd) {
    // etcd has no leases of ours to read: grants, and nothing before them.
    if (opts.act == action::create)
      opts.act = action::grant;
    if (opts.act != action::grant)
      usage_error("--proto etcd sends lease grants only (--action grant)");
    if (opts.fill > 0)
      usage_error("--fill needs tlmd (--proto tcp or http)");
  } else if (opts.act == action::grant) {
    usage_error("--action grant needs --proto etcd");
  }
  if (opts.fill_port == 0 && opts.proto == protocol::tcp)
    opts.fill_port = opts.port;
  if (opts.fill > 0 && opts.fill_port == 0)
    usage_error("--fill with --proto http needs --fill-port (the TCP port)");
  return opts;
}

// -- reply scanning -----------------------------------------------------------

// Replies are scanned rather than parsed into a DOM: the bench shares two
// cores with the daemon, and it only needs a few top-level members.

constexpr auto npos = std::string_view::npos;

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()
         && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
    ++i;
  return i;
}

// Returns the index just past the JSON value that starts at `i`, or npos.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size())
    return npos;
  if (s[i] == '"') {
    for (++i; i < s.size(); ++i) {
      if (s[i] == '\\')
        ++i;
      else if (s[i] == '"')
        return i + 1;
    }
    return npos;
  }
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      char c = s[i];
      if (c == '"') {
        i = skip_value(s, i);
        if (i == npos)
          return npos;
        continue;
      }
      if (c == '{' || c == '[')
        ++depth;
      else if ((c == '}' || c == ']') && --depth == 0)
        return i + 1;
      ++i;
    }
    return npos;
  }
  auto end = s.find_first_of(",}] \t\r\n", i);
  return end == i ? npos : std::min(end, s.size());
}

// Raw text of member `key` of the JSON object `object` (strings keep their
// quotes), or nullopt if it is missing or the object is malformed.
std::optional<std::string_view> member(std::string_view object,
                                       std::string_view key) {
  size_t i = skip_space(object, 0);
  if (i >= object.size() || object[i] != '{')
    return std::nullopt;
  i = skip_space(object, i + 1);
  while (i < object.size() && object[i] == '"') {
    size_t name_end = skip_value(object, i);
    if (name_end == npos)
      return std::nullopt;
    auto name = object.substr(i + 1, name_end - i - 2);
    i = skip_space(object, name_end);
    if (i >= object.size() || object[i] != ':')
      return std::nullopt;
    i = skip_space(object, i + 1);
    size_t value_end = skip_value(object, i);
    if (value_end == npos)
      return std::nullopt;
    if (name == key)
      return object.substr(i, value_end - i);
    i = skip_space(object, value_end);
    if (i >= object.size() || object[i] != ',')
      return std::nullopt;
    i = skip_space(object, i + 1);
  }
  return std::nullopt;
}

std::string_view unquote(std::string_view raw) {
  if (raw.size() >= 2 && raw.front() == '"')
    return raw.substr(1, raw.size() - 2);
  return raw;
}

bool is_success(std::string_view reply) {
  return member(reply, "result") == "\"success\"";
}

std::string_view error_code(std::string_view reply) {
  if (!member(reply, "result"))
    return "bad_reply";
  auto error = member(reply, "error");
  return error ? unquote(*error) : "failure_without_error";
}

// The lease id as a JSON string literal, ready to paste into a request.
std::optional<std::string_view> lease_id(std::string_view reply) {
  auto lease = member(reply, "lease");
  return lease ? member(*lease, "id") : std::nullopt;
}

// -- statistics ---------------------------------------------------------------

struct run_stats {
  uint64_t sent = 0;
  uint64_t ok = 0;
  uint64_t fail = 0;
  uint64_t reconnects = 0;
  std::map<std::string, uint64_t, std::less<>> errors;
  std::vector<uint32_t> latency_us;
  bool keep_lease_ids = false;
  std::vector<std::string> lease_ids;

  void count_failure(std::string_view code, uint64_t n = 1) {
    if (n == 0)
      return;
    auto it = errors.find(code);
    if (it == errors.end())
      it = errors.emplace(std::string{code}, 0).first;
    it->second += n;
    fail += n;
  }

  void record(std::string_view reply, time_point sent_at,
              time_point received_at) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(received_at
                                                                    - sent_at);
    latency_us.push_back(static_cast<uint32_t>(us.count()));
    if (!is_success(reply)) {
      count_failure(error_code(reply));
      return;
    }
    ++ok;
    if (keep_lease_ids)
      if (auto id = lease_id(reply))
        lease_ids.emplace_back(*id);
  }

  // etcd's gateway: a 200 is a success, anything else fails by its status.
  void record_status(int status, time_point sent_at, time_point received_at) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(received_at
                                                                    - sent_at);
    latency_us.push_back(static_cast<uint32_t>(us.count()));
    if (status == 200)
      ++ok;
    else
      count_failure("http_" + std::to_string(status));
  }

  void merge(run_stats&& other) {
    sent += other.sent;
    ok += other.ok;
    fail += other.fail;
    reconnects += other.reconnects;
    for (auto& [code, n] : other.errors)
      errors[code] += n;
    latency_us.insert(latency_us.end(), other.latency_us.begin(),
                      other.latency_us.end());
    lease_ids.insert(lease_ids.end(),
                     std::make_move_iterator(other.lease_ids.begin()),
                     std::make_move_iterator(other.lease_ids.end()));
  }
};

// Milliseconds at quantile `q` (0..1]; reorders `latency_us`.
double percentile_ms(std::vector<uint32_t>& latency_us, double q) {
  if (latency_us.empty())
    return 0;
  auto k = std::min(
    latency_us.size() - 1,
    static_cast<size_t>(q * static_cast<double>(latency_us.size())));
  std::nth_element(latency_us.begin(), latency_us.begin() + k,
                   latency_us.end());
  return latency_us[k] / 1000.0;
}

// -- connections --------------------------------------------------------------

// A non-blocking TCP connection and the bytes received but not yet used.
class connection {
public:
  connection() = default;
  explicit connection(int fd) : fd_(fd) {
  }
  connection(connection&& other) noexcept
    : input(std::move(other.input)), fd_(std::exchange(other.fd_, -1)) {
  }
  connection& operator=(connection&& other) noexcept {
    std::swap(fd_, other.fd_);
    input.swap(other.input);
    return *this;
  }
  ~connection() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  int fd() const {
    return fd_;
  }

  // Waits until `events` are possible or `deadline` passes (false).
  bool wait(short events, time_point deadline) const {
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(
                    deadline - bench_clock::now())
                    .count();
      if (left <= 0)
        return false;
      pollfd pfd{fd_, events, 0};
      int rc = ::poll(&pfd, 1, static_cast<int>(std::min<long>(left, 1000)));
      if (rc > 0)
        return true; // errors and hang-ups show in the next read or write
      if (rc < 0 && errno != EINTR)
        return false;
    }
  }

  // Writes what the socket takes now, advancing `written`; false on error.
  bool write_some(std::string_view data, size_t& written) {
    auto n = ::send(fd_, data.data() + written, data.size() - written,
                    MSG_NOSIGNAL);
    if (n >= 0) {
      written += static_cast<size_t>(n);
      return true;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }

  // Appends what the socket has now to `input`; false on EOF or error.
  bool read_some() {
    char chunk[65536];
    auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      input.append(chunk, static_cast<size_t>(n));
      return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }

  std::string input;

private:
  int fd_ = -1;
};

// Connects within `connect_timeout`; throws std::runtime_error on failure.
connection connect_to(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found))
    throw std::runtime_error("cannot resolve " + host + ": "
                             + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard{found,
                                                             ::freeaddrinfo};
  std::string why = "no address";
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
    connection conn{::socket(ai->ai_family,
                             ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                             ai->ai_protocol)};
    if (conn.fd() < 0
        || (::connect(conn.fd(), ai->ai_addr, ai->ai_addrlen) != 0
            && errno != EINPROGRESS)) {
      why = std::strerror(errno);
      continue;
    }
    if (!conn.wait(POLLOUT, bench_clock::now() + connect_timeout)) {
      why = "timed out";
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(conn.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      why = std::strerror(err);
      continue;
    }
    // Requests are written whole; Nagle would only delay the last segment.
    int one = 1;
    ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return conn;
  }
  throw std::runtime_error("cannot connect to " + host + ":" + service + ": "
                           + why);
}

// -- HTTP responses -----------------------------------------------------------

struct http_response {
  int status = 0;
  std::string body;
  bool close = false; // the server ends the connection after this response
};

enum class parse_state { incomplete, complete, malformed };

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t");
  auto last = s.find_last_not_of(" \t");
  return first == npos ? std::string_view{} : s.substr(first, last - first + 1);
}

// Decodes a chunked body starting at `pos`; `end` is set past its trailer.
parse_state decode_chunked(std::string_view input, size_t pos,
                           std::string& body, size_t& end) {
  body.clear();
  for (;;) {
    auto line_end = input.find("\r\n", pos);
    if (line_end == npos)
      return parse_state::incomplete;
    size_t size = 0;
    auto [ptr, ec] = std::from_chars(input.data() + pos,
                                     input.data() + line_end, size, 16);
    if (ec != std::errc{})
      return parse_state::malformed;
    pos = line_end + 2;
    if (size == 0) {
      // The last chunk: optional trailer fields, then an empty line.
      if (input.compare(pos, 2, "\r\n") == 0) {
        end = pos + 2;
        return parse_state::complete;
      }
      auto trailer_end = input.find("\r\n\r\n", pos);
      if (trailer_end == npos)
        return parse_state::incomplete;
      end = trailer_end + 4;
      return parse_state::complete;
    }
    if (input.size() < pos + size + 2)
      return parse_state::incomplete;
    body.append(input.data() + pos, size);
    pos += size + 2; // the chunk and its CRLF
  }
}

// Takes one response off the front of `input` once it is complete. Bodies
// are framed by Content-Length, chunked encoding, or the end of the stream.
parse_state take_http_response(std::string& input, bool at_eof,
                               http_response& out) {
  auto head_end = input.find("\r\n\r\n");
  if (head_end == npos)
    return parse_state::incomplete;
  std::string_view head{input.data(), head_end};
  int status = 0;
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1."
      || std::from_chars(head.data() + 9, head.data() + 12, status).ec
           != std::errc{})
    return parse_state::malformed;
  std::optional<size_t> content_length;
  bool chunked = false;
  bool close = false;
  for (auto pos = head.find("\r\n"); pos != npos;) {
    auto next = head.find("\r\n", pos + 2);
    auto line = head.substr(pos + 2, next == npos ? npos : next - pos - 2);
    pos = next;
    auto colon = line.find(':');
    if (colon == npos)
      continue;
    auto name = lower(trim(line.substr(0, colon)));
    auto value = lower(trim(line.substr(colon + 1)));
    if (name == "content-length") {
      size_t length = 0;
      auto [ptr, ec] = std::from_chars(value.data(),
                                       value.data() + value.size(), length);
      if (ec != std::errc{})
        return parse_state::malformed;
      content_length = length;
    } else if (name == "transfer-encoding") {
      chunked = value.find("chunked") != npos;
    } else if (name == "connection") {
      close = value.find("close") != npos;
    }
  }
  size_t body_start = head_end + 4;
  size_t end = 0;
  if (chunked) {
    auto state = decode_chunked(input, body_start, out.body, end);
    if (state != parse_state::complete)
      return state;
  } else if (content_length) {
    if (input.size() < body_start + *content_length)
      return parse_state::incomplete;
    out.body.assign(input, body_start, *content_length);
    end = body_start + *content_length;
  } else {
    if (!at_eof)
      return parse_state::incomplete;
    out.body.assign(input, body_start);
    end = input.size();
    close = true;
  }
  out.status = status;
  out.close = close;
  input.erase(0, end);
  return parse_state::complete;
}

// -- workload -----------------------------------------------------------------

std::string frame(protocol proto, const std::string& host,
                  const std::string& body) {
  if (proto == protocol::tcp)
    return body + '\n';
  auto path = proto == protocol::etcd ? "/v3/lease/grant" : "/v1/actions";
  return std::string{"POST "} + path + " HTTP/1.1\r\nHost: " + host
         + "\r\nContent-Type: application/json\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Every request a run sends, framed in advance so that sending only copies
// bytes.
class workload {
public:
  workload(action act, protocol proto, const std::string& host, uint64_t ttl_ms,
           const std::vector<std::string>& lease_ids)
    : act_(act) {
    create_ = frame(proto, host,
                    R"({"action":"create","options":{"ttl":)"
                      + std::to_string(ttl_ms) + "}}");
    health_ = frame(proto, host, R"({"action":"health"})");
    // etcd's TTL is in seconds; it raises one below its minimum itself.
    grant_ = frame(proto, host,
                   R"({"TTL":)" + std::to_string(ttl_ms / 1000) + "}");
    for (const auto& id : lease_ids) {
      if (act == action::revoke)
        revokes_.push_back(
          frame(proto, host, R"({"action":"revoke","token_id":)" + id + "}"));
      else
        gets_.push_back(
          frame(proto, host, R"({"action":"get","token_id":)" + id + "}"));
    }
  }

  const std::string& request(uint64_t index) const {
    switch (act_) {
      case action::create: return create_;
      case action::get: return gets_[index % gets_.size()];
      // The run sends at most one request per pool lease.
      case action::revoke: return revokes_[index % revokes_.size()];
      case action::grant: return grant_;
      case action::mixed:
        // Ten requests: five creates, four gets, one health.
        if (index % 10 == 9)
          return health_;
        return index % 2 == 0 ? create_ : gets_[(index / 2) % gets_.size()];
    }
    return health_;
  }

private:
  action act_;
  std::string create_;
  std::string health_;
  std::string grant_;
  std::vector<std::string> gets_;    // round-robin over the lease pool
  std::vector<std::string> revokes_; // one per pool lease
};

// -- load ---------------------------------------------------------------------

// Hands out request indexes so the connections together send at most
// `total` requests.
class request_counter {
public:
  explicit request_counter(uint64_t total) : total_(total) {
  }

  // Claims up to `n` indexes: returns the first one and how many.
  std::pair<uint64_t, uint64_t> claim(uint64_t n) {
    auto first = next_.fetch_add(n, std::memory_order_relaxed);
    return {first, first >= total_ ? 0 : std::min(n, total_ - first)};
  }

private:
  uint64_t total_;
  std::atomic<uint64_t> next_{0};
};

struct run_spec {
  protocol proto;
  std::string host;
  uint16_t port;
  int connections;
  int pipeline;
  uint64_t requests;
  double duration_s;
  bool keep_lease_ids = false;
};

struct run_context {
  const run_spec& spec;
  const workload& work;
  request_counter& counter;
  time_point stop_sending;
  time_point give_up; // replies still missing now count as failures
};

// Keeps up to `pipeline` requests in flight: writes a batch, reads replies
// as they come, and tops up with the next batch once the last is written.
// A request's latency runs from the write of its batch to its reply.
void run_tcp_pipelined(connection& conn, const run_context& ctx,
                       run_stats& stats) {
  std::deque<time_point> in_flight; // batch write time, in request order
  std::string batch;
  size_t batch_written = 0;
  bool open = true;
  while (open) {
    auto now = bench_clock::now();
    auto room = static_cast<uint64_t>(ctx.spec.pipeline) - in_flight.size();
    if (batch_written == batch.size() && room > 0 && now < ctx.stop_sending) {
      auto [first, count] = ctx.counter.claim(room);
      batch.clear();
      batch_written = 0;
      for (auto index = first; index < first + count; ++index)
        batch += ctx.work.request(index);
      in_flight.insert(in_flight.end(), count, now);
      stats.sent += count;
    }
    if (in_flight.empty() || now >= ctx.give_up)
      break; // done: nothing left to send and every reply in, or too late
    short events = batch_written < batch.size() ? POLLIN | POLLOUT : POLLIN;
    if (!conn.wait(events, ctx.give_up))
      break;
    if (batch_written < batch.size())
      open = conn.write_some(batch, batch_written);
    open = open && conn.read_some();
    auto received_at = bench_clock::now();
    size_t start = 0;
    for (size_t end; (end = conn.input.find('\n', start)) != npos;
         start = end + 1) {
      std::string_view reply{conn.input.data() + start, end - start};
      if (in_flight.empty()) {
        stats.count_failure("unexpected_reply");
        continue;
      }
      stats.record(reply, in_flight.front(), received_at);
      in_flight.pop_front();
    }
    conn.input.erase(0, start);
  }
  stats.count_failure(open ? "no_reply" : "connection_closed",
                      in_flight.size());
}

enum class exchange_result { answered, timed_out, closed, malformed };

// Sends one HTTP request and reads its response before `deadline`.
exchange_result http_exchange(connection& conn, std::string_view request,
                              time_point deadline, http_response& response) {
  size_t written = 0;
  while (written < request.size()) {
    if (!conn.write_some(request, written))
      return exchange_result::closed;
    if (written < request.size() && !conn.wait(POLLOUT, deadline))
      return exchange_result::timed_out;
  }
  for (bool open = true;;) {
    switch (take_http_response(conn.input, !open, response)) {
      case parse_state::complete: return exchange_result::answered;
      case parse_state::malformed: return exchange_result::malformed;
      case parse_state::incomplete: break;
    }
    if (!open)
      return exchange_result::closed;
    if (!conn.wait(POLLIN, deadline))
      return exchange_result::timed_out;
    open = conn.read_some();
  }
}

// One request at a time on a keep-alive connection; reconnects when the
// server closes it.
void run_http_sequential(connection& conn, const run_context& ctx,
                         run_stats& stats) {
  http_response response;
  while (bench_clock::now() < ctx.stop_sending) {
    auto [index, count] = ctx.counter.claim(1);
    if (count == 0)
      break;
    ++stats.sent;
    auto sent_at = bench_clock::now();
    auto result = http_exchange(conn, ctx.work.request(index), ctx.give_up,
                                response);
    if (result == exchange_result::timed_out) {
      stats.count_failure("no_reply");
      break;
    }
    if (result == exchange_result::answered) {
      // An error page that is not JSON still tells its status.
      if (ctx.spec.proto == protocol::etcd)
        stats.record_status(response.status, sent_at, bench_clock::now());
      else if (response.status / 100 != 2 && !member(response.body, "result"))
        stats.count_failure("http_" + std::to_string(response.status));
      else
        stats.record(response.body, sent_at, bench_clock::now());
      if (!response.close)
        continue;
    } else {
      stats.count_failure(result == exchange_result::closed
                            ? "connection_closed"
                            : "bad_http_response");
    }
    try {
      conn = connect_to(ctx.spec.host, ctx.spec.port);
      ++stats.reconnects;
    } catch (const std::exception&) {
      stats.count_failure("connect_failed");
      break;
    }
  }
}

struct run_result {
  run_stats stats;
  double seconds = 0;
};

run_result run_load(const run_spec& spec, const workload& work) {
  // Connect first, so connection setup is not part of the measurement.
  std::vector<connection> conns;
  for (int i = 0; i < spec.connections; ++i)
    conns.push_back(connect_to(spec.host, spec.port));
  request_counter counter{spec.requests};
  auto start = bench_clock::now();
  auto stop_sending = start
                      + std::chrono::duration_cast<bench_clock::duration>(
                        std::chrono::duration<double>{spec.duration_s});
  run_context ctx{spec, work, counter, stop_sending,
                  stop_sending + reply_grace};
  std::vector<run_stats> stats(conns.size());
  std::vector<time_point> finished(conns.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < conns.size(); ++i)
    threads.emplace_back([&, i] {
      // Fill a local and move it out, so threads share no hot cache lines.
      run_stats local;
      local.keep_lease_ids = spec.keep_lease_ids;
      if (spec.proto == protocol::tcp)
        run_tcp_pipelined(conns[i], ctx, local);
      else
        run_http_sequential(conns[i], ctx, local);
      finished[i] = bench_clock::now();
      stats[i] = std::move(local);
    });
  for (auto& thread : threads)
    thread.join();
  run_result result;
  for (auto& s : stats)
    result.stats.merge(std::move(s));
  auto end = *std::max_element(finished.begin(), finished.end());
  result.seconds = std::chrono::duration<double>(end - start).count();
  return result;
}

// -- reporting ----------------------------------------------------------------

std::string_view name_of(protocol proto) {
  switch (proto) {
    case protocol::tcp: return "tcp";
    case protocol::http: return "http";
    case protocol::etcd: return "etcd";
  }
  return "?";
}

std::string_view name_of(action act) {
  switch (act) {
    case action::create: return "create";
    case action::get: return "get";
    case action::revoke: return "revoke";
    case action::mixed: return "mixed";
    case action::grant: return "grant";
  }
  return "?";
}

// "ok=.. fail=.. secs=.. rate=../s"; the rate counts successes only.
void print_counts(const run_result& result) {
  const auto& s = result.stats;
  auto secs = std::max(result.seconds, 1e-9);
  std::printf("ok=%llu fail=%llu secs=%.2f rate=%.0f/s",
              static_cast<unsigned long long>(s.ok),
              static_cast<unsigned long long>(s.fail), result.seconds,
              static_cast<double>(s.ok) / secs);
}

// " errors=code:n,..." and " reconnects=n" when there are any.
void print_trouble(const run_stats& s) {
  const char* separator = " errors=";
  for (const auto& [code, n] : s.errors) {
    std::printf("%s%s:%llu", separator, code.c_str(),
                static_cast<unsigned long long>(n));
    separator = ",";
  }
  if (s.reconnects > 0)
    std::printf(" reconnects=%llu",
                static_cast<unsigned long long>(s.reconnects));
}

// -- phases -------------------------------------------------------------------

// Creates `opts.fill` long-lived leases over pipelined TCP; true if all were.
bool fill(const options& opts) {
  run_spec spec{protocol::tcp, opts.host, opts.fill_port,     fill_connections,
                fill_pipeline, opts.fill, opts.fill_timeout_s};
  auto result = run_load(
    spec,
    workload{action::create, protocol::tcp, opts.host, opts.fill_ttl_ms, {}});
  std::printf("fill leases=%llu ", static_cast<unsigned long long>(opts.fill));
  print_counts(result);
  print_trouble(result.stats);
  if (result.stats.sent < opts.fill)
    std::printf(" unsent=%llu (--fill-timeout-s)",
                static_cast<unsigned long long>(opts.fill - result.stats.sent));
  std::printf("\n");
  std::fflush(stdout);
  return result.stats.ok == opts.fill && result.stats.fail == 0;
}

// Creates the leases a get, revoke or mixed run uses, over the run's
// protocol; over TCP at least as deep as the fill, since it is not measured.
std::vector<std::string> create_pool(const options& opts) {
  run_spec spec{opts.proto,
                opts.host,
                opts.port,
                opts.connections,
                std::max(opts.pipeline, fill_pipeline),
                opts.pool,
                opts.fill_timeout_s,
                /*keep_lease_ids=*/true};
  auto result = run_load(
    spec,
    workload{action::create, opts.proto, opts.host, opts.fill_ttl_ms, {}});
  if (result.stats.lease_ids.size() < opts.pool) {
    std::fprintf(stderr, "tlm_bench: created %zu of %llu pool leases:",
                 result.stats.lease_ids.size(),
                 static_cast<unsigned long long>(opts.pool));
    for (const auto& [code, n] : result.stats.errors)
      std::fprintf(stderr, " %s:%llu", code.c_str(),
                   static_cast<unsigned long long>(n));
    std::fprintf(stderr, "\n");
    std::exit(1);
  }
  return std::move(result.stats.lease_ids);
}

// Prints "ready" and waits for a line on stdin; false on EOF, an error or
// no line within `start_line_timeout`.
bool wait_for_start_line() {
  std::printf("ready\n");
  std::fflush(stdout);
  auto deadline = bench_clock::now() + start_line_timeout;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(
                  deadline - bench_clock::now())
                  .count();
    if (left <= 0)
      return false;
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(std::min<long>(left, 1000)));
    if (rc < 0 && errno != EINTR)
      return false;
    if (rc <= 0)
      continue;
    char c = 0;
    auto n = ::read(STDIN_FILENO, &c, 1);
    if (n == 1 && c == '\n')
      return true;
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
      return false;
  }
}

bool measure(const options& opts, const std::vector<std::string>& pool) {
  auto pipeline = opts.proto == protocol::tcp ? opts.pipeline : 1;
  auto requests = opts.requests;
  if (opts.act == action::revoke)
    requests = std::min<uint64_t>(requests, pool.size());
  run_spec spec{opts.proto, opts.host, opts.port,      opts.connections,
                pipeline,   requests,  opts.duration_s};
  auto result = run_load(
    spec, workload{opts.act, opts.proto, opts.host, opts.ttl_ms, pool});
  auto& s = result.stats;
  std::printf("proto=%s action=%s conns=%d pipeline=%d requests=%llu ",
              name_of(opts.proto).data(), name_of(opts.act).data(),
              opts.connections, pipeline,
              static_cast<unsigned long long>(s.sent));
  print_counts(result);
  auto p50 = percentile_ms(s.latency_us, 0.50);
  auto p99 = percentile_ms(s.latency_us, 0.99);
  auto max = percentile_ms(s.latency_us, 1.0);
  std::printf(" p50=%.2f p99=%.2f max=%.2f ms", p50, p99, max);
  print_trouble(s);
  std::printf("\n");
  return s.ok > 0 && s.fail == 0;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  try {
    bool clean = true;
    if (opts.fill > 0)
      clean = fill(opts);
    std::vector<std::string> pool;
    if (opts.act != action::create && opts.act != action::grant)
      pool = create_pool(opts);
    if (opts.start_on_stdin && !wait_for_start_line()) {
      std::fprintf(stderr, "tlm_bench: no start line on stdin\n");
      return 2;
    }
    clean = measure(opts, pool) && clean;
    return clean ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tlm_bench: %s\n", e.what());
    return 2;
  }
}
