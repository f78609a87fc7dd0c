#include "api/http_server.hpp"

#include <algorithm>
#include <initializer_list>
#include <istream>

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/URI.h>

namespace tlm {

namespace {

using json = nlohmann::json;
using Poco::Net::HTTPServerRequest;
using Poco::Net::HTTPServerResponse;

struct route_error {
  ec code;
  std::string message;
};

/// Reads the body, refusing more than `max_message_bytes`.
std::optional<std::string> read_body(HTTPServerRequest& req) {
  // Without a length and without chunks a request has no body (RFC 9112,
  // 6.3); Poco would read until the client closes.
  if (!req.hasContentLength() && !req.getChunkedTransferEncoding())
    return std::string{};
  if (req.hasContentLength()
      && req.getContentLength64() > static_cast<int64_t>(max_message_bytes))
    return std::nullopt;
  std::string body;
  std::vector<char> buf(64 * 1024);
  auto& in = req.stream();
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    body.append(buf.data(), static_cast<size_t>(in.gcount()));
    if (body.size() > max_message_bytes)
      return std::nullopt;
  }
  return body;
}

/// A body that must hold a JSON object, or nothing (then `{}`).
json object_body(const std::string& body, api_request& failed) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos)
    return json::object();
  if (!nesting_ok(body)) {
    failed.error = make_error(ec::invalid_request,
                              "the body nests deeper than "
                                + std::to_string(max_message_depth)
                                + " levels");
    return json::object();
  }
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    failed.error = make_error(ec::invalid_request,
                              "the body is not valid JSON");
  else if (!parsed.is_object())
    failed.error = make_error(ec::invalid_request,
                              "the body must be a JSON object");
  return parsed;
}

/// Refuses query parameters a route does not take: one we ignored would be
/// a wish silently not granted.
bool query_ok(const Poco::URI::QueryParameters& query,
              std::initializer_list<std::string_view> allowed,
              const std::string& route_name, api_request& failed) {
  for (auto& [key, _] : query)
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      failed.error = make_error(
        ec::invalid_request,
        "unknown query parameter '" + key.substr(0, 64) + "' for "
          + route_name + (allowed.size() == 0 ? " (it takes none)" : ""));
      return false;
    }
  return true;
}

/// A REST body as an action message: the route names the action (and the
/// lease), so a body that names another is refused, not overridden.
json body_message(const std::string& body, const char* verb,
                  api_request& failed) {
  auto message = object_body(body, failed);
  if (failed.error)
    return message;
  if (auto i = message.find("action");
      i != message.end() && *i != json(verb)) {
    failed.error = make_error(ec::invalid_request,
                              std::string{"the route is a "} + verb
                                + "; leave action out of the body");
    return message;
  }
  message["action"] = verb;
  return message;
}

/// Maps a REST call onto an action message.
api_request route(HTTPServerRequest& req, const std::string& body,
                  bool& created) {
  Poco::URI uri(req.getURI());
  const auto& path = uri.getPath();
  const auto& method = req.getMethod();
  auto query = uri.getQueryParameters();
  api_request failed;
  auto no_query = [&](const std::string& name) {
    return query_ok(query, {}, name, failed);
  };
  constexpr std::string_view leases = "/v1/leases";
  if (path == "/v1/actions" && method == "POST")
    return no_query("POST /v1/actions") ? parse_request(body) : failed;
  if (path == "/healthz" && method == "GET")
    return no_query("GET /healthz")
             ? parse_message(json{{"action", "health"}})
             : failed;
  if (path == leases && method == "POST") {
    auto message = body_message(body, "create", failed);
    if (failed.error || !no_query("POST /v1/leases"))
      return failed;
    created = true;
    return parse_message(message);
  }
  if (path == leases && method == "GET") {
    if (!query_ok(query, {"limit", "backend", "tag", "cursor", "state"},
                  "GET /v1/leases", failed))
      return failed;
    json message{{"action", "list"}};
    for (auto& [key, value] : query) {
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
  constexpr std::string_view jobs = "/v1/jobs";
  if (path == jobs && method == "POST") {
    auto message = body_message(body, "revoke_prefix", failed);
    if (failed.error || !no_query("POST /v1/jobs"))
      return failed;
    created = true;
    return parse_message(message);
  }
  if (path.rfind(std::string{jobs} + "/", 0) == 0 && method == "GET") {
    auto id = path.substr(jobs.size() + 1);
    if (!id.empty() && id.find('/') == std::string::npos)
      return no_query("GET /v1/jobs/{id}")
               ? parse_message(json{{"action", "job"}, {"job_id", id}})
               : failed;
  }
  if (path.rfind(std::string{leases} + "/", 0) == 0) {
    auto rest = path.substr(leases.size() + 1);
    auto slash = rest.find('/');
    auto id = rest.substr(0, slash);
    auto tail = slash == std::string::npos ? "" : rest.substr(slash);
    if (!id.empty() && tail.empty() && method == "GET")
      return no_query("GET /v1/leases/{id}")
               ? parse_message(json{{"action", "get"}, {"token_id", id}})
               : failed;
    if (!id.empty() && tail.empty() && method == "DELETE") {
      if (!query_ok(query, {"force"}, "DELETE /v1/leases/{id}", failed))
        return failed;
      json message{{"action", "revoke"}, {"token_id", id}};
      for (auto& [key, value] : query) {
        if (value != "true" && value != "1" && value != "false"
            && value != "0") {
          failed.error = make_error(ec::invalid_request,
                                    "force must be true or false");
          return failed;
        }
        message["force"] = value == "true" || value == "1";
      }
      return parse_message(message);
    }
    if (!id.empty() && tail == "/renew" && method == "POST") {
      auto message = body_message(body, "renew", failed);
      if (failed.error || !no_query("POST /v1/leases/{id}/renew"))
        return failed;
      for (auto key : {"token_id", "lease_id"})
        if (auto i = message.find(key); i != message.end() && *i != id) {
          failed.error = make_error(ec::invalid_request,
                                    std::string{key}
                                      + " in the body differs from the "
                                        "lease id in the path");
          return failed;
        }
      message["token_id"] = id;
      message.erase("lease_id");
      return parse_message(message);
    }
  }
  failed.error = make_error(ec::not_found, "no route for " + method + " "
                                             + path.substr(0, 200));
  return failed;
}

class api_handler : public Poco::Net::HTTPRequestHandler {
public:
  explicit api_handler(dispatcher& d) : dispatcher_(d) {
    // nop
  }

  void handleRequest(HTTPServerRequest& req,
                     HTTPServerResponse& resp) override {
    auto reply = answer(req, resp);
    resp.setStatus(static_cast<HTTPServerResponse::HTTPStatus>(
      reply.code == ec::none && created_ ? 201 : http_status(reply.code)));
    resp.setContentType("application/json");
    resp.setContentLength64(static_cast<int64_t>(reply.body.size()));
    resp.send().write(reply.body.data(),
                      static_cast<std::streamsize>(reply.body.size()));
  }

private:
  api_reply answer(HTTPServerRequest& req, HTTPServerResponse& resp) {
    auto body = read_body(req);
    if (!body) {
      resp.setKeepAlive(false); // the rest of the body stays unread
      return dispatcher::failure(
        std::nullopt, make_error(ec::too_large, "a message must be at most "
                                                "1 MiB"));
    }
    if (!dispatcher_.keys().allows_header(req.get("Authorization", "")))
      return dispatcher::failure(
        std::nullopt, make_error(ec::unauthorized,
                                 "send the header 'Authorization: Bearer "
                                 "<api key>'"));
    return dispatcher_.call_and_wait(route(req, *body, created_));
  }

  dispatcher& dispatcher_;
  bool created_ = false;
};

class handler_factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
  explicit handler_factory(dispatcher& d) : dispatcher_(d) {
    // nop
  }

  Poco::Net::HTTPRequestHandler*
  createRequestHandler(const HTTPServerRequest&) override {
    return new api_handler(dispatcher_);
  }

private:
  dispatcher& dispatcher_;
};

} // namespace

http_server::http_server(dispatcher& d, Poco::Net::ServerSocket socket,
                         int threads)
  : pool_(2, threads + 1) {
  auto params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(threads);
  params->setMaxQueued(1024);
  params->setKeepAlive(true);
  params->setMaxKeepAliveRequests(0); // unlimited
  params->setKeepAliveTimeout(Poco::Timespan(10, 0));
  server_ = std::make_unique<Poco::Net::HTTPServer>(new handler_factory(d),
                                                    pool_, socket, params);
}

http_server::~http_server() {
  stop();
}

uint16_t http_server::port() const {
  return server_->port();
}

void http_server::start() {
  server_->start();
}

void http_server::stop() {
  if (stopped_)
    return;
  stopped_ = true;
  server_->stopAll(false);
  pool_.joinAll();
}

} // namespace tlm
