#include "api/http_server.hpp"

#include <algorithm>
#include <initializer_list>

#include <Poco/Net/HTTPResponse.h>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

#include "api/http_answer.hpp"
#include "api/http_framing.hpp"
#include "api/http_parser.hpp"
#include "api/loop_server.hpp"
#include "api/request_order.hpp"

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

/// The status of a core route's reply.
int status_of(const routed& r, const api_reply& reply) {
  if (r.status != 0)
    return r.status;
  return reply.code == ec::none && r.created ? 201 : http_status(reply.code);
}

/// The response bytes: status line, our few fields, and the body (none for
/// HEAD, whose Content-Length still says what a GET would get).
std::string render(const http_answer& a, bool keep_alive, bool head) {
  std::string out;
  out.reserve(160 + a.body.size());
  out.append("HTTP/1.1 ").append(std::to_string(a.status)).append(" ");
  out.append(Poco::Net::HTTPResponse::getReasonForStatus(
    static_cast<Poco::Net::HTTPResponse::HTTPStatus>(a.status)));
  out.append("\r\nContent-Type: ").append(a.content_type);
  out.append("\r\nContent-Length: ").append(std::to_string(a.body.size()));
  out.append(keep_alive ? "\r\nConnection: Keep-Alive"
                        : "\r\nConnection: Close");
  if (!a.allow.empty())
    out.append("\r\nAllow: ").append(a.allow);
  out.append("\r\n\r\n");
  if (!head)
    out.append(a.body);
  return out;
}

/// One request of a step: answered here, by a surface, or by the core.
struct http_item {
  bool keep_alive = true;
  bool head = false;
  /// Answered without the core (a refusal, a 401, a surface's answer).
  std::optional<http_answer> answer;
  routed route;
};

} // namespace

// -- the server ---------------------------------------------------------------

struct http_server::impl : loop_server {
  impl(dispatcher& d, Poco::Net::ServerSocket socket, int threads,
       http_limits lim, std::vector<http_surface> surfaces,
       std::shared_ptr<io_loops> loops);

  std::shared_ptr<loop_conn> make_conn(loop_state& loop,
                                       asio::ip::tcp::socket socket) override;

  /// Answers a connection refused at accept, then closes it.
  static void refuse(asio::ip::tcp::socket& socket, const std::string& why);

  dispatcher& disp;
  http_limits limits;
  std::vector<http_surface> surfaces;
  /// Connections open at once; beyond them, new ones get 503.
  size_t max_connections;
  peer_limiter peers;
  /// Where surfaces run: they wait for the core, which a loop must not.
  asio::thread_pool surface_workers{2};
  std::atomic<size_t> steps{0};
};

namespace {

/// Requests a connection may have parsed and in flight at once.
constexpr size_t max_step_requests = 64;

/// Reply bytes a connection may hold unread before it stops reading.
constexpr int64_t max_held_bytes = 8 * 1024 * 1024;

class http_conn : public loop_conn {
public:
  using impl = http_server::impl;

  http_conn(std::shared_ptr<impl> srv, loop_state& loop,
            asio::ip::tcp::socket s, int64_t fd)
    : loop_conn(loop, std::move(s)),
      srv_(std::move(srv)),
      fd_(fd),
      request_since_ms_(steady_now_ms()) {
    // nop
  }

  /// Deadlines: the request's read deadline, keep-alive idling, stalls.
  void check(int64_t now) override {
    if (closed_ || step_out_)
      return;
    auto quiet = now - last_active_ms.load();
    if (writing()) {
      if (quiet
          >= (srv_->stopping ? stop_write_ms : srv_->limits.idle_timeout_ms))
        close();
      return;
    }
    if (srv_->stopping)
      return close();
    if (request_since_ms_ >= 0) {
      if (now - request_since_ms_ >= srv_->limits.read_timeout_ms)
        refuse(transport_failure(
          408, "the request did not arrive within "
                 + std::to_string(srv_->limits.read_timeout_ms) + " ms"));
      return;
    }
    if (quiet >= srv_->limits.idle_timeout_ms)
      close();
  }

  void shut() override {
    if (!step_out_ && !closed_)
      finish_after_writes();
  }

private:
  void on_close() override {
    srv_->peers.release(fd_);
  }

  void on_written(size_t) override {
    update_busy(step_out_);
    on_input();
  }

  /// Answers `a` and closes: the request cannot be served.
  void refuse(const http_answer& a) {
    in_.clear();
    queue(render(a, false, false));
    finish_after_writes();
  }

  /// Parses what arrived into a step and runs it, or reads on.
  void on_input() override {
    if (closed_ || step_out_ || ending_)
      return;
    if (srv_->stopping)
      return finish_after_writes();
    if (held() >= max_held_bytes)
      return; // resumed as the client reads
    if (request_since_ms_ < 0 && !in_.empty())
      request_since_ms_ = steady_now_ms(); // its first byte
    std::vector<http_item> items;
    std::vector<api_request> reqs;
    request_order order;
    while (items.size() < max_step_requests && !ending_) {
      auto r = parser_.parse(in_);
      if (r.what == http_parse_result::kind::need_more) {
        if (r.send_continue) {
          queue("HTTP/1.1 100 Continue\r\n\r\n");
          write_more();
        }
        break;
      }
      if (r.what == http_parse_result::kind::failure) {
        in_.clear();
        ending_ = true;
        auto& item = items.emplace_back();
        item.keep_alive = false;
        item.answer = transport_failure(r.status, r.message, r.code);
        break;
      }
      in_.erase(0, r.consumed);
      request_since_ms_ = in_.empty() ? -1 : steady_now_ms();
      auto& parsed = *r.request;
      if (const auto* surface = surface_of(parsed)) {
        if (!items.empty()) {
          carried_ = std::move(parsed); // after this step's answers
          break;
        }
        return run_surface(*surface, std::move(parsed));
      }
      auto item = core_item(parsed);
      if (!item.answer && !item.route.req.error
          && !order.admit(reqs.size(), scope_of(item.route.req.cmd)).empty()
          && !items.empty()) {
        carried_ = std::move(parsed);
        break;
      }
      if (!item.keep_alive)
        ending_ = true;
      if (!item.answer)
        reqs.push_back(std::move(item.route.req));
      items.push_back(std::move(item));
    }
    if (!items.empty())
      return run_step(std::move(items), std::move(reqs));
    if (eof_)
      return finish_after_writes(); // a partial request has nobody to answer
    wait_readable();
  }

  const http_surface* surface_of(const http_parsed& parsed) const {
    for (auto& surface : srv_->surfaces)
      if (surface.owns(parsed.target))
        return &surface;
    return nullptr;
  }

  /// A request for the action routes: refused here, or routed to the core.
  http_item core_item(http_parsed& parsed) {
    http_item item;
    auto& head = parsed.head;
    item.keep_alive = head.getKeepAlive();
    item.head = head.getMethod() == "HEAD";
    auto& authorization = head.get("Authorization",
                                   Poco::Net::HTTPMessage::EMPTY);
    if (!srv_->disp.keys().allows_header(authorization)) {
      item.answer = http_answer{
        401,
        dispatcher::failure(std::nullopt,
                            make_error(ec::unauthorized,
                                       "send the header 'Authorization: "
                                       "Bearer <api key>'"))
          .body,
        {},
        false};
      return item;
    }
    item.route = route(head.getMethod(), parsed.target, parsed.body);
    return item;
  }

  void run_step(std::vector<http_item> items, std::vector<api_request> reqs) {
    step_out_ = true;
    update_busy(true);
    ++srv_->steps;
    auto self = std::static_pointer_cast<http_conn>(shared_from_this());
    auto shared_items = std::make_shared<std::vector<http_item>>(
      std::move(items));
    srv_->disp.send(std::move(reqs), [self, shared_items](batch_outcome o) {
      asio::post(self->loop().ctx,
                 [self, shared_items, o = std::move(o)]() mutable {
                   self->answered(*shared_items, std::move(o).render());
                 });
    });
  }

  void answered(std::vector<http_item>& items, std::vector<api_reply> replies) {
    size_t next = 0;
    bool keep = true;
    for (auto& item : items) {
      http_answer a;
      if (item.answer) {
        a = std::move(*item.answer);
      } else {
        auto& reply = replies[next++];
        a.status = status_of(item.route, reply);
        a.body = std::move(reply.body);
        a.allow = std::move(item.route.allow);
      }
      keep = keep && item.keep_alive && !a.close;
      queue(render(a, keep, item.head));
      if (!keep)
        break;
    }
    step_done(keep);
  }

  void run_surface(const http_surface& surface, http_parsed parsed) {
    step_out_ = true;
    update_busy(true);
    ++srv_->steps;
    auto self = std::static_pointer_cast<http_conn>(shared_from_this());
    auto job = [self, &surface, p = std::move(parsed)]() mutable {
      auto& head = p.head;
      auto& authorization = head.get("Authorization",
                                     Poco::Net::HTTPMessage::EMPTY);
      auto& method = head.getMethod();
      http_call call{method, p.target, p.body, authorization,
                     self->srv_->disp.keys().allows_header(authorization)};
      auto a = surface.answer(call);
      bool keep = head.getKeepAlive() && !a.close;
      auto bytes = render(a, keep, method == "HEAD");
      asio::post(self->loop().ctx, [self, keep, b = std::move(bytes)] {
        self->queue(b);
        self->step_done(keep);
      });
    };
    asio::post(srv_->surface_workers, std::move(job));
  }

  void step_done(bool keep_alive) {
    --srv_->steps;
    step_out_ = false;
    if (closed_)
      return;
    write_more();
    if (!keep_alive) {
      ending_ = true;
      return finish_after_writes();
    }
    if (carried_) {
      // A request parsed before its turn: put it back at the front.
      auto parsed = std::move(*carried_);
      carried_.reset();
      return replay(std::move(parsed));
    }
    on_input();
  }

  /// Runs a request that was parsed while an earlier step was in flight.
  void replay(http_parsed parsed) {
    if (const auto* surface = surface_of(parsed))
      return run_surface(*surface, std::move(parsed));
    std::vector<http_item> items;
    std::vector<api_request> reqs;
    auto item = core_item(parsed);
    if (!item.keep_alive)
      ending_ = true;
    if (!item.answer)
      reqs.push_back(std::move(item.route.req));
    items.push_back(std::move(item));
    run_step(std::move(items), std::move(reqs));
  }

  std::shared_ptr<impl> srv_;
  int64_t fd_;
  http_request_parser parser_;
  std::optional<http_parsed> carried_;
  /// When the request being read began (-1: none, keep-alive idling).
  int64_t request_since_ms_;
  bool step_out_ = false;
  /// The last request of the connection is in: read no more.
  bool ending_ = false;
};

} // namespace

http_server::impl::impl(dispatcher& d, Poco::Net::ServerSocket socket,
                        int threads, http_limits lim,
                        std::vector<http_surface> s,
                        std::shared_ptr<io_loops> loops)
  : loop_server(
    std::move(socket), std::move(loops),
    std::clamp<int64_t>(std::min(lim.read_timeout_ms, lim.idle_timeout_ms) / 4,
                        5, 250)),
    disp(d),
    limits(lim),
    surfaces(std::move(s)),
    max_connections(static_cast<size_t>(threads)
                    + static_cast<size_t>(std::max(1024, threads * 4))),
    peers(lim.max_per_peer) {
  // nop
}

void http_server::impl::refuse(asio::ip::tcp::socket& socket,
                               const std::string& why) {
  asio::error_code ignored;
  socket.non_blocking(true, ignored);
  auto bytes = render(transport_failure(503, why, ec::overloaded), false,
                      false);
  socket.write_some(asio::buffer(bytes), ignored);
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  // Unread input would turn the close into a reset that can destroy the
  // answer before the client reads it.
  char drain[4096];
  asio::error_code err;
  while (!err)
    socket.read_some(asio::buffer(drain), err);
}

std::shared_ptr<loop_conn>
http_server::impl::make_conn(loop_state& loop, asio::ip::tcp::socket socket) {
  asio::error_code err;
  auto peer = socket.remote_endpoint(err);
  if (err)
    return nullptr; // reset before we got to it
  if (open() >= max_connections) {
    refuse(socket, "the server is busy; try again later");
    return nullptr;
  }
  auto host = peer.address().to_string();
  auto fd = static_cast<int64_t>(socket.native_handle());
  if (!peers.try_acquire(host, fd)) {
    refuse(socket, "too many connections from " + host + " (at most "
                     + std::to_string(limits.max_per_peer) + ")");
    return nullptr;
  }
  return std::make_shared<http_conn>(
    std::static_pointer_cast<impl>(shared_from_this()), loop, std::move(socket),
    fd);
}

http_server::http_server(dispatcher& d, Poco::Net::ServerSocket socket,
                         int threads, http_limits limits,
                         std::vector<http_surface> surfaces,
                         std::shared_ptr<io_loops> loops)
  : impl_(std::make_shared<impl>(d, std::move(socket), threads, limits,
                                 std::move(surfaces), std::move(loops))) {
  // nop
}

http_server::~http_server() {
  stop();
  impl_->join_own_loops();
}

uint16_t http_server::port() const {
  return impl_->port();
}

void http_server::start() {
  impl_->start();
}

void http_server::stop() {
  impl_->stop([this] { return impl_->steps == 0; });
  impl_->surface_workers.join();
}

} // namespace tlm
