#include "api/http_server.hpp"

#include <algorithm>
#include <condition_variable>
#include <initializer_list>
#include <mutex>
#include <thread>

#include <Poco/Net/HTTPChunkedStream.h>
#include <Poco/Net/HTTPFixedLengthStream.h>
#include <Poco/Net/HTTPHeaderStream.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnection.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>

#include "api/http_answer.hpp"
#include "api/http_framing.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;
using Poco::Net::HTTPRequest;

/// A failure object with a status the transport chose (405, 408, 505...).
http_answer transport_failure(int status, std::string message,
                              ec code = ec::invalid_request) {
  return {
    status,
    dispatcher::failure(std::nullopt, make_error(code, std::move(message)))
      .body,
    {},
    true};
}

/// Refuses query parameters a route does not take: one we ignored would be
/// a wish silently not granted.
bool query_ok(const std::vector<std::pair<std::string, std::string>>& query,
              std::initializer_list<std::string_view> allowed,
              const std::string& route_name, api_request& failed) {
  for (auto& [key, _] : query)
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      failed.error = make_error(
        ec::invalid_request,
        "unknown query parameter '" + key.substr(0, 64) + "' for " + route_name
          + (allowed.size() == 0 ? " (it takes none)" : ""));
      return false;
    }
  return true;
}

/// A REST body as an action message: the route names the action (and the
/// lease), so a body that names another is refused, not overridden.
json body_message(const std::string& body, const char* verb,
                  api_request& failed) {
  auto message = object_body(body, failed.error);
  if (failed.error)
    return message;
  if (auto i = message.find("action"); i != message.end() && *i != json(verb)) {
    failed.error = make_error(ec::invalid_request,
                              std::string{"the route is a "} + verb
                                + "; leave action out of the body");
    return message;
  }
  message["action"] = verb;
  return message;
}

/// The resources of the REST API, by path.
enum class resource { none, actions, healthz, leases, lease, renew, jobs, job };

struct matched {
  resource what = resource::none;
  std::string id;
};

/// Which resource a path names; an id is exactly one non-empty segment.
matched match(const std::vector<std::string>& s) {
  auto is = [&](std::initializer_list<std::string_view> names) {
    return s.size() == names.size()
           && std::equal(names.begin(), names.end(), s.begin(),
                         [](std::string_view a, const std::string& b) {
                           return a.empty() ? !b.empty() : a == b;
                         });
  };
  // "" stands for an id.
  if (is({"v1", "actions"}))
    return {resource::actions, {}};
  if (is({"healthz"}))
    return {resource::healthz, {}};
  if (is({"v1", "leases"}))
    return {resource::leases, {}};
  if (is({"v1", "leases", ""}))
    return {resource::lease, s[2]};
  if (is({"v1", "leases", "", "renew"}))
    return {resource::renew, s[2]};
  if (is({"v1", "jobs"}))
    return {resource::jobs, {}};
  if (is({"v1", "jobs", ""}))
    return {resource::job, s[2]};
  return {};
}

/// The methods a resource has, as the `Allow` header lists them.
std::vector<std::string> methods_of(resource r) {
  switch (r) {
    case resource::actions:
    case resource::renew:
    case resource::jobs: return {"POST"};
    case resource::healthz:
    case resource::job: return {"GET"};
    case resource::leases: return {"GET", "POST"};
    case resource::lease: return {"GET", "DELETE"};
    case resource::none: break;
  }
  return {};
}

/// A REST call as an action message, or why not.
struct routed {
  api_request req;
  bool created = false;
  /// A status of the route itself (405); 0: the reply's code decides.
  int status = 0;
  std::string allow;
};

/// `GET /v1/leases` query parameters as a list message.
api_request list_request(const http_target& target) {
  api_request failed;
  if (!query_ok(target.query, {"limit", "backend", "tag", "cursor", "state"},
                "GET /v1/leases", failed))
    return failed;
  json message{{"action", "list"}};
  for (auto& [key, value] : target.query) {
    if (key == "limit") {
      try {
        size_t used = 0;
        auto n = std::stoll(value, &used);
        if (used != value.size())
          throw std::invalid_argument("limit");
        message["limit"] = n;
      } catch (...) {
        failed.error = make_error(ec::invalid_request,
                                  "limit must be an integer");
        return failed;
      }
    } else if (!value.empty()) {
      message[key] = value;
    }
  }
  return parse_message(message);
}

/// `DELETE /v1/leases/{id}[?force=...]` as a revoke message.
api_request revoke_route(const http_target& target, const std::string& id) {
  api_request failed;
  if (!query_ok(target.query, {"force"}, "DELETE /v1/leases/{id}", failed))
    return failed;
  json message{{"action", "revoke"}, {"token_id", id}};
  for (auto& [key, value] : target.query) {
    if (value != "true" && value != "1" && value != "false" && value != "0") {
      failed.error = make_error(ec::invalid_request,
                                "force must be true or false");
      return failed;
    }
    message["force"] = value == "true" || value == "1";
  }
  return parse_message(message);
}

/// `POST /v1/leases/{id}/renew` as a renew message.
api_request renew_request(const http_target& target, const std::string& id,
                          const std::string& body) {
  api_request failed;
  auto message = body_message(body, "renew", failed);
  if (failed.error
      || !query_ok(target.query, {}, "POST /v1/leases/{id}/renew", failed))
    return failed;
  for (auto key : {"token_id", "lease_id"})
    if (auto i = message.find(key); i != message.end() && *i != id) {
      failed.error = make_error(ec::invalid_request,
                                std::string{key}
                                  + " in the body differs from the lease id "
                                    "in the path");
      return failed;
    }
  message["token_id"] = id;
  message.erase("lease_id");
  return parse_message(message);
}

/// The refusal of a call no route takes (404) or not with its method
/// (405), if it is one.
std::optional<routed> refusal(const std::string& method,
                              const http_target& target,
                              const std::vector<std::string>& methods) {
  routed out;
  if (methods.empty()) {
    // The id segment is never echoed: it may be a token sent by mistake.
    auto& segs = target.segments;
    bool has_id = segs.size() > 2 && segs[0] == "v1"
                  && (segs[1] == "leases" || segs[1] == "jobs");
    std::string path;
    for (size_t i = 0; i < segs.size(); ++i)
      path += "/" + (has_id && i == 2 ? std::string{"{id}"} : segs[i]);
    out.req.error = make_error(ec::not_found, "no route for " + method + " "
                                                + path.substr(0, 200));
    return out;
  }
  if (std::find(methods.begin(), methods.end(), method) != methods.end())
    return std::nullopt;
  for (auto& m : methods)
    out.allow += (out.allow.empty() ? "" : ", ") + m;
  out.status = 405;
  out.req.error = make_error(ec::invalid_request,
                             "this route takes only " + out.allow);
  return out;
}

/// Maps a REST call onto an action message.
routed route(const std::string& method, const http_target& target,
             const std::string& body) {
  auto [what, id] = match(target.segments);
  if (auto refused = refusal(method, target, methods_of(what)))
    return std::move(*refused);
  routed out;
  auto no_query = [&](const char* name) {
    return query_ok(target.query, {}, name, out.req);
  };
  auto with_body = [&](const char* verb, const char* name) {
    auto message = body_message(body, verb, out.req);
    if (out.req.error || !no_query(name))
      return;
    out.created = true;
    out.req = parse_message(message);
  };
  switch (what) {
    case resource::actions:
      if (no_query("POST /v1/actions"))
        out.req = parse_request(body);
      break;
    case resource::healthz:
      if (no_query("GET /healthz"))
        out.req = parse_message(json{{"action", "health"}});
      break;
    case resource::leases:
      if (method == "POST")
        with_body("create", "POST /v1/leases");
      else
        out.req = list_request(target);
      break;
    case resource::jobs: with_body("revoke_prefix", "POST /v1/jobs"); break;
    case resource::job:
      if (no_query("GET /v1/jobs/{id}"))
        out.req = parse_message(json{{"action", "job"}, {"job_id", id}});
      break;
    case resource::lease:
      if (method == "DELETE")
        out.req = revoke_route(target, id);
      else if (no_query("GET /v1/leases/{id}"))
        out.req = parse_message(json{{"action", "get"}, {"token_id", id}});
      break;
    case resource::renew: out.req = renew_request(target, id, body); break;
    case resource::none: break;
  }
  return out;
}

/// Answers one request whose header and body have been read.
http_answer answer(dispatcher& d, const std::vector<http_surface>& surfaces,
                   const HTTPRequest& req, const http_target& target,
                   const std::string& body) {
  auto& authorization = req.get("Authorization", Poco::Net::HTTPMessage::EMPTY);
  bool key_ok = d.keys().allows_header(authorization);
  http_call call{req.getMethod(), target, body, authorization, key_ok};
  for (auto& surface : surfaces)
    if (auto a = surface(call))
      return std::move(*a);
  if (!key_ok)
    return {401,
            dispatcher::failure(std::nullopt,
                                make_error(ec::unauthorized,
                                           "send the header 'Authorization: "
                                           "Bearer <api key>'"))
              .body,
            {},
            false};
  auto r = route(req.getMethod(), target, body);
  auto reply = d.call_and_wait(std::move(r.req));
  http_answer out;
  out.status = r.status != 0                         ? r.status
               : reply.code == ec::none && r.created ? 201
                                                     : http_status(reply.code);
  out.body = std::move(reply.body);
  out.allow = std::move(r.allow);
  return out;
}

} // namespace

// -- the server ---------------------------------------------------------------

struct http_server::impl {
  impl(dispatcher& d, Poco::Net::ServerSocket socket, int threads,
       http_limits lim, std::vector<http_surface> surfaces);

  void watch();

  /// How long a reading connection runs before it may be shed: enough for
  /// a normal client's request to arrive whole.
  static constexpr int64_t shed_after_ms = 25;
  static constexpr auto sweep_interval = std::chrono::milliseconds(20);

  dispatcher& disp;
  http_limits limits;
  std::vector<http_surface> surfaces;
  int workers;
  /// Connections waiting for a worker beyond this are refused (503).
  int max_queued;
  Poco::ThreadPool pool;
  peer_limiter peers;
  connection_registry registry;
  Poco::Net::HTTPServerParams::Ptr params;
  std::unique_ptr<Poco::Net::TCPServer> server;
  std::mutex mtx;
  std::condition_variable cv;
  bool stopping = false;
  std::thread watchdog;
};

namespace {

steady_time now() {
  return std::chrono::steady_clock::now();
}

/// Writes all of `text`; false when the client is gone or too slow.
bool send_all(Poco::Net::StreamSocket& socket, const std::string& text) {
  try {
    size_t sent = 0;
    while (sent < text.size()) {
      int n = socket.sendBytes(text.data() + sent,
                               static_cast<int>(text.size() - sent));
      if (n <= 0)
        return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  } catch (const Poco::Exception&) {
    return false;
  }
}

std::string render(const http_answer& a, bool keep_alive) {
  Poco::Net::HTTPResponse resp(
    static_cast<Poco::Net::HTTPResponse::HTTPStatus>(a.status));
  resp.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
  resp.setContentType(a.content_type);
  resp.setContentLength64(static_cast<int64_t>(a.body.size()));
  resp.setKeepAlive(keep_alive);
  if (!a.allow.empty())
    resp.set("Allow", a.allow);
  std::ostringstream out;
  resp.write(out);
  out << a.body;
  return out.str();
}

/// One client connection: reads requests under the deadlines, answers them
/// in order, keeps the connection alive between them.
class http_connection : public Poco::Net::TCPServerConnection {
public:
  http_connection(const Poco::Net::StreamSocket& socket, http_server::impl& srv)
    : TCPServerConnection(socket),
      srv_(srv),
      fd_(static_cast<int64_t>(socket.impl()->sockfd())) {
    // nop
  }

  ~http_connection() override {
    srv_.peers.release(fd_);
  }

  void run() override {
    auto& lim = srv_.limits;
    conn_ = srv_.registry.add(socket(), now(), lim.read_timeout_ms);
    try {
      Poco::Net::HTTPServerSession session(socket(), srv_.params);
      // A reply that cannot be written for this long is given up.
      socket().setSendTimeout(Poco::Timespan(lim.idle_timeout_ms * 1000));
      bool first = true;
      for (;;) {
        // Keep-alive: the idle timeout runs until the next request begins,
        // then its read deadline.
        if (!first
            && !srv_.registry.enter(conn_, conn_phase::idle, now(),
                                    lim.idle_timeout_ms))
          break;
        if (!session.hasMoreRequests())
          break;
        if (!first
            && !srv_.registry.enter(conn_, conn_phase::reading, now(),
                                    lim.read_timeout_ms))
          break;
        first = false;
        if (!serve_one(session))
          break;
      }
    } catch (...) {
      // A reset or failed socket ends the connection, nothing else.
    }
    srv_.registry.remove(conn_);
  }

private:
  /// Answers `a` and tells whether to keep the connection.
  bool reply(const http_answer& a, bool keep_alive) {
    keep_alive = keep_alive && !a.close;
    return send_all(socket(), render(a, keep_alive)) && keep_alive;
  }

  /// A request the watchdog cut off, or whose read timed out (a single
  /// read is bounded by the same deadline), gets 408; one the client
  /// broke, 400.
  bool refuse_unread(const std::string& what, bool timed_out = false) {
    if (timed_out || srv_.registry.cut(conn_))
      return reply(
        transport_failure(408, "the request did not arrive within "
                                 + std::to_string(srv_.limits.read_timeout_ms)
                                 + " ms"),
        false);
    return reply(transport_failure(400, what), false);
  }

  /// Reads, checks and answers one request; false closes the connection.
  bool serve_one(Poco::Net::HTTPServerSession& session) {
    HTTPRequest req;
    try {
      Poco::Net::HTTPHeaderInputStream header(session);
      req.read(header);
    } catch (const Poco::Net::NoMessageException&) {
      return false; // closed between requests, or cut before a byte came
    } catch (const Poco::Net::MessageException&) {
      return refuse_unread("the request header is malformed or too long");
    } catch (const Poco::TimeoutException&) {
      srv_.registry.enter(conn_, conn_phase::reading, now(), 0);
      return refuse_unread("", true);
    }
    if (srv_.registry.cut(conn_))
      return refuse_unread("");
    if (auto err = check_version(req.getVersion()))
      return reply(transport_failure(err->status, err->message), false);
    auto framing = read_framing(req);
    if (framing.error)
      return reply(
        transport_failure(framing.error->status, framing.error->message),
        false);
    if (framing.length && *framing.length > max_message_bytes)
      return reply(transport_failure(413, "a message must be at most 1 MiB",
                                     ec::too_large),
                   false);
    auto target = parse_target(req.getURI());
    if (target.error)
      return reply(transport_failure(400, *target.error), false);
    if (req.getExpectContinue() && (framing.length || framing.chunked)
        && !send_all(socket(), "HTTP/1.1 100 Continue\r\n\r\n"))
      return false;
    std::string body;
    if (!read_body(session, framing, body))
      return false;
    // A request read whole is answered even if it was just shed.
    srv_.registry.enter(conn_, conn_phase::busy, now(), 0);
    auto a = answer(srv_.disp, srv_.surfaces, req, target, body);
    return reply(a, req.getKeepAlive() && !srv_.registry.cut(conn_));
  }

  /// Reads the body `framing` announces; false when it does not arrive
  /// whole (after answering when there is someone to answer).
  bool read_body(Poco::Net::HTTPServerSession& session,
                 const body_framing& framing, std::string& body) {
    // Without a length and without chunks a request has no body (RFC 9112,
    // 6.3).
    if (!framing.length && !framing.chunked)
      return true;
    std::unique_ptr<std::istream> in;
    if (framing.chunked)
      in = std::make_unique<Poco::Net::HTTPChunkedInputStream>(session);
    else
      in = std::make_unique<Poco::Net::HTTPFixedLengthInputStream>(
        session,
        static_cast<Poco::Net::HTTPFixedLengthStreamBuf::ContentLength>(
          *framing.length));
    std::vector<char> buf(64 * 1024);
    try {
      while (*in) {
        in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
        body.append(buf.data(), static_cast<size_t>(in->gcount()));
        if (body.size() > max_message_bytes) {
          reply(transport_failure(413, "a message must be at most 1 MiB",
                                  ec::too_large),
                false);
          return false;
        }
      }
    } catch (const Poco::TimeoutException&) {
      srv_.registry.enter(conn_, conn_phase::reading, now(), 0);
      refuse_unread("", true);
      return false;
    } catch (const Poco::Net::MessageException&) {
      refuse_unread("the chunked body is malformed");
      return false;
    }
    if (srv_.registry.cut(conn_)) {
      refuse_unread("");
      return false;
    }
    // The client closed before its body was complete: nobody to answer.
    return !framing.length || body.size() == *framing.length;
  }

  http_server::impl& srv_;
  int64_t fd_;
  connection_registry::id conn_ = 0;
};

class connection_factory : public Poco::Net::TCPServerConnectionFactory {
public:
  explicit connection_factory(http_server::impl& srv) : srv_(srv) {
    // nop
  }

  Poco::Net::TCPServerConnection*
  createConnection(const Poco::Net::StreamSocket& socket) override {
    return new http_connection(socket, srv_);
  }

private:
  http_server::impl& srv_;
};

/// Refuses, at accept, connections over the per-peer limit or beyond the
/// queue, with a 503 failure object: the accept thread never waits on a
/// client, and a refused client learns why.
class admission : public Poco::Net::TCPServerConnectionFilter {
public:
  explicit admission(http_server::impl& srv) : srv_(srv) {
    // nop
  }

  bool accept(const Poco::Net::StreamSocket& socket) override {
    std::string peer;
    try {
      peer = socket.peerAddress().host().toString();
    } catch (const Poco::Exception&) {
      return false; // reset before we got to it
    }
    if (srv_.server && srv_.server->queuedConnections() >= srv_.max_queued)
      return refuse(socket, "the server is busy; try again later");
    auto fd = static_cast<int64_t>(socket.impl()->sockfd());
    if (!srv_.peers.try_acquire(peer, fd))
      return refuse(socket, "too many connections from " + peer + " (at most "
                              + std::to_string(srv_.limits.max_per_peer) + ")");
    return true;
  }

private:
  static bool refuse(const Poco::Net::StreamSocket& accepted,
                     const std::string& why) {
    auto socket = accepted;
    try {
      // A fresh socket's send buffer takes the few bytes without waiting.
      socket.setBlocking(false);
      send_all(socket,
               render(transport_failure(503, why, ec::overloaded), false));
      socket.shutdownSend();
      // Unread input would turn the close into a reset that can destroy
      // the answer before the client reads it.
      char drain[4096];
      while (socket.available() > 0 && socket.receiveBytes(drain, 4096) > 0) {
      }
    } catch (...) {
      // The client is gone: nothing to tell.
    }
    return false;
  }

  http_server::impl& srv_;
};

} // namespace

http_server::impl::impl(dispatcher& d, Poco::Net::ServerSocket socket,
                        int threads, http_limits lim,
                        std::vector<http_surface> surfaces)
  : disp(d),
    limits(lim),
    surfaces(std::move(surfaces)),
    workers(threads),
    max_queued(std::max(1024, threads * 4)),
    pool(2, threads + 1),
    peers(lim.max_per_peer) {
  params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(threads);
  // The admission filter refuses first, with an answer; Poco's own refusal
  // would close without one.
  params->setMaxQueued(max_queued + 1);
  params->setKeepAlive(true);
  params->setMaxKeepAliveRequests(0); // unlimited
  params->setKeepAliveTimeout(Poco::Timespan(lim.idle_timeout_ms * 1000));
  // Bounds each single read as well; the watchdog bounds the request.
  params->setTimeout(Poco::Timespan(lim.read_timeout_ms * 1000));
  server = std::make_unique<Poco::Net::TCPServer>(new connection_factory(*this),
                                                  pool, socket, params);
  server->setConnectionFilter(new admission(*this));
}

void http_server::impl::watch() {
  std::unique_lock<std::mutex> guard{mtx};
  while (!stopping) {
    cv.wait_for(guard, sweep_interval);
    // Connections queued while every worker runs wait for a worker, not
    // for a thread that is just starting.
    size_t waiting = 0;
    if (server->currentThreads() >= workers)
      waiting = static_cast<size_t>(server->queuedConnections());
    registry.sweep(now(), waiting, shed_after_ms);
  }
}

http_server::http_server(dispatcher& d, Poco::Net::ServerSocket socket,
                         int threads, http_limits limits,
                         std::vector<http_surface> surfaces)
  : impl_(std::make_unique<impl>(d, std::move(socket), threads, limits,
                                 std::move(surfaces))) {
  // nop
}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return impl_->server->port();
}

void http_server::start() {
  impl_->server->start();
  impl_->watchdog = std::thread([this] { impl_->watch(); });
}

void http_server::stop() {
  auto& s = *impl_;
  if (!s.watchdog.joinable())
    return;
  s.server->stop();
  s.registry.stop();
  s.pool.joinAll();
  {
    std::lock_guard<std::mutex> guard{s.mtx};
    s.stopping = true;
  }
  s.cv.notify_all();
  s.watchdog.join();
}

} // namespace tlm
