// How each remote backend maps its service's answers to our codes, against
// a canned HTTP server on loopback, and how bad settings are refused.

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cloud_backends/registry.hpp"
#include "core/error.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

/// Answers every request with the status and body set by the test, and
/// remembers the last request line and body.
struct canned_server {
  struct reply {
    int status = 200;
    std::string body = "{}";
    int delay_ms = 0;
  };

  std::mutex mtx;
  reply next;
  std::string last_request;
  std::string last_body;
  std::unique_ptr<Poco::Net::HTTPServer> server;

  class handler : public Poco::Net::HTTPRequestHandler {
  public:
    explicit handler(canned_server& s) : s_(s) {
    }
    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
      std::string body{std::istreambuf_iterator<char>(req.stream()), {}};
      reply r;
      {
        std::lock_guard<std::mutex> guard{s_.mtx};
        s_.last_request = req.getMethod() + " " + req.getURI();
        s_.last_body = body;
        r = s_.next;
      }
      if (r.delay_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(r.delay_ms));
      resp.setStatus(
        static_cast<Poco::Net::HTTPResponse::HTTPStatus>(r.status));
      resp.setContentType("application/json");
      resp.setContentLength(static_cast<std::streamsize>(r.body.size()));
      resp.send() << r.body;
    }

  private:
    canned_server& s_;
  };

  class factory : public Poco::Net::HTTPRequestHandlerFactory {
  public:
    explicit factory(canned_server& s) : s_(s) {
    }
    Poco::Net::HTTPRequestHandler*
    createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
      return new handler(s_);
    }

  private:
    canned_server& s_;
  };

  canned_server() {
    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
    server = std::make_unique<Poco::Net::HTTPServer>(
      new factory(*this), socket, new Poco::Net::HTTPServerParams);
    server->start();
  }

  /// Serves TLS with the given (self-signed) certificate.
  canned_server(const std::string& cert, const std::string& key) {
    Poco::Net::Context::Ptr context = new Poco::Net::Context(
      Poco::Net::Context::TLS_SERVER_USE, key, cert, "",
      Poco::Net::Context::VERIFY_NONE);
    Poco::Net::SecureServerSocket socket(
      Poco::Net::SocketAddress("127.0.0.1", 0), 64, context);
    server = std::make_unique<Poco::Net::HTTPServer>(
      new factory(*this), socket, new Poco::Net::HTTPServerParams);
    server->start();
  }

  ~canned_server() {
    server->stopAll(true);
  }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(server->port());
  }

  void answer(int status, json body, int delay_ms = 0) {
    std::lock_guard<std::mutex> guard{mtx};
    next = reply{status, body.dump(), delay_ms};
  }
};

std::string secret_file(const std::string& content) {
  char name[] = "/tmp/tlm-secret-XXXXXX";
  close(mkstemp(name));
  std::ofstream(name) << content << "\n";
  return name;
}

/// A port nothing listens on.
std::string dead_url() {
  Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
  auto port = socket.address().port();
  socket.close();
  return "http://127.0.0.1:" + std::to_string(port);
}

std::shared_ptr<cloud_backend> influxdb(const std::string& url,
                                        json extra = json::object()) {
  json settings{{"type", "influxdb"},
                {"url", url},
                {"token_file", secret_file("admin-token")},
                {"org_id", "0123456789abcdef"},
                {"timeout_ms", 500}};
  settings.update(extra);
  auto made = make_cloud_backend("v2", settings);
  REQUIRE(made);
  return *made;
}

json influx_error(const char* code, const char* message) {
  return json{{"code", code}, {"message", message}};
}

ec code(const caf::error& err) {
  return code_of(err);
}

} // namespace

TEST_CASE("influxdb: a create sends orgID, permissions and the lease mark") {
  canned_server srv;
  auto be = influxdb(srv.url());
  srv.answer(
    201, {{"id", "0a1b2c3d4e5f6789"}, {"token", std::string(86, 'x') + "=="}});
  auto token = be->create("LEASE1", 1000, json::object());
  REQUIRE(token);
  CHECK(token->backend_id == "0a1b2c3d4e5f6789");
  CHECK(token->value.size() == 88);
  CHECK(srv.last_request == "POST /api/v2/authorizations");
  auto sent = json::parse(srv.last_body);
  CHECK(sent["orgID"] == "0123456789abcdef");
  CHECK(sent["description"] == "tlm:LEASE1");
  CHECK(sent["permissions"][0]["resource"]["orgID"] == "0123456789abcdef");
}

TEST_CASE("influxdb: answers map to our codes") {
  canned_server srv;
  auto be = influxdb(srv.url());
  srv.answer(401, influx_error("unauthorized", "unauthorized access"));
  auto err = be->create("L", 1000, json::object()).error();
  CHECK(code(err) == ec::backend_error);
  CHECK(message_of(err).find("backends.v2.token_file") != std::string::npos);
  srv.answer(403, influx_error("forbidden", "insufficient permissions"));
  CHECK(code(be->revoke("0a1b2c3d4e5f6789")) == ec::backend_error);
  srv.answer(400, influx_error("invalid", "unknown resource type \"x\""));
  err = be->create("L", 1000, json::object()).error();
  CHECK(code(err) == ec::invalid_request);
  CHECK(message_of(err).find("unknown resource type") != std::string::npos);
  srv.answer(422, influx_error("unprocessable entity", "bad"));
  CHECK(code(be->create("L", 1000, json::object()).error())
        == ec::invalid_request);
  srv.answer(500, influx_error("internal error", "boom"));
  CHECK(code(be->revoke("0a1b2c3d4e5f6789")) == ec::backend_unavailable);
  srv.answer(503, influx_error("unavailable", "later"));
  CHECK(code(be->create("L", 1000, json::object()).error())
        == ec::backend_unavailable);
  srv.answer(429, influx_error("too many requests", "slow down"));
  CHECK(code(be->revoke("0a1b2c3d4e5f6789")) == ec::overloaded);
}

TEST_CASE("influxdb: a 404 on revoke means already revoked") {
  canned_server srv;
  auto be = influxdb(srv.url());
  srv.answer(404, influx_error("not found", "authorization not found"));
  CHECK(!be->revoke("0a1b2c3d4e5f6789"));
  srv.answer(204, json::object());
  CHECK(!be->revoke("0a1b2c3d4e5f6789"));
  CHECK(srv.last_request == "DELETE /api/v2/authorizations/0a1b2c3d4e5f6789");
}

TEST_CASE("influxdb: refused and hanging servers are backend_unavailable") {
  auto be = influxdb(dead_url());
  auto err = be->revoke("0a1b2c3d4e5f6789");
  CHECK(code(err) == ec::backend_unavailable);
  canned_server srv;
  auto slow = influxdb(srv.url());
  srv.answer(204, json::object(), 1500); // timeout_ms is 500
  err = slow->revoke("0a1b2c3d4e5f6789");
  CHECK(code(err) == ec::backend_unavailable);
  CHECK(message_of(err).find("in time") != std::string::npos);
}

TEST_CASE("influxdb: https certificates are verified by default") {
  char dir[] = "/tmp/tlm-tls-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string cert = std::string{dir} + "/cert.pem";
  std::string key = std::string{dir} + "/key.pem";
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
             "/CN=127.0.0.1 -keyout "
             + key + " -out " + cert + " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  canned_server srv{cert, key};
  srv.answer(204, json::object());
  auto be = influxdb("https://127.0.0.1:" + std::to_string(srv.server->port()));
  // A self-signed certificate no CA vouches for: refused, not trusted.
  auto err = be->revoke("0a1b2c3d4e5f6789");
  CHECK(code(err) == ec::backend_error);
  CHECK(message_of(err).find("TLS") != std::string::npos);
  CHECK(srv.last_request.empty()); // no request ever reached it
  std::system(("rm -rf " + std::string{dir}).c_str());
}

TEST_CASE("influxdb: an org name is resolved once; unknown names say so") {
  canned_server srv;
  json settings{{"org", "acme"}, {"org_id", nullptr}};
  auto be = influxdb(srv.url(), settings);
  srv.answer(404, influx_error("not found", "organization name \"acme\" not "
                                            "found"));
  auto err = be->create("L", 1000, json::object()).error();
  CHECK(code(err) == ec::backend_error);
  CHECK(message_of(err).find("backends.v2.org") != std::string::npos);
  srv.answer(200, {{"orgs", {{{"id", "fedcba9876543210"}, {"name", "acme"}}}}});
  CHECK(be->get_all());
  CHECK(srv.last_request
        == "GET /api/v2/authorizations?orgID=fedcba9876543210");
  // Once known, the id is reused without asking again.
  srv.answer(201, {{"id", "0a1b2c3d4e5f6789"}, {"token", "t"}});
  REQUIRE(be->create("L", 1000, json::object()));
  CHECK(srv.last_request == "POST /api/v2/authorizations");
  CHECK(json::parse(srv.last_body)["orgID"] == "fedcba9876543210");
}

TEST_CASE("influxdb: get_all keeps only tokens marked by tlmd") {
  canned_server srv;
  auto be = influxdb(srv.url());
  srv.answer(200,
             {{"authorizations",
               {{{"id", "1111111111111111"}, {"description", "tlm:A"}},
                {{"id", "2222222222222222"}, {"description", "theirs"}}}}});
  auto all = be->get_all();
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  CHECK(all->front().backend_id == "1111111111111111");
  CHECK(all->front().lease_id == "A");
  CHECK(json::parse(all->front().extra) == json::object()); // no copy
}

TEST_CASE("influxdb1: InfluxQL errors inside 200 replies are checked") {
  canned_server srv;
  auto made = make_cloud_backend("v1",
                                 {{"type", "influxdb1"},
                                  {"url", srv.url()},
                                  {"admin_user", "admin"},
                                  {"admin_password_file", secret_file("pw")},
                                  {"default_database", "db"}});
  REQUIRE(made);
  auto be = *made;
  srv.answer(
    200, {{"results", {{{"statement_id", 0}, {"error", "user not found"}}}}});
  CHECK(!be->revoke("tlm_A")); // already gone
  srv.answer(
    200,
    {{"results", {{{"statement_id", 0}, {"error", "user already exists"}}}}});
  auto err = be->create("A", 1000, json::object()).error();
  CHECK(code(err) == ec::backend_error);
  CHECK(message_of(err).find("user already exists") != std::string::npos);
  srv.answer(401, {{"error", "authorization failed"}});
  err = be->revoke("tlm_A");
  CHECK(code(err) == ec::backend_error);
  CHECK(message_of(err).find("admin_password_file") != std::string::npos);
  srv.answer(500, {{"error", "boom"}});
  CHECK(code(be->revoke("tlm_A")) == ec::backend_unavailable);
  CHECK(code(be->create("A", 1000, {{"database", "bad name"}}).error())
        == ec::invalid_request);
  CHECK(code(be->create("A", 1000, {{"privilege", "OWN"}}).error())
        == ec::invalid_request);
}

TEST_CASE("redis_acl: an unreachable server is backend_unavailable; rules "
          "cannot be widened through options") {
  auto port = std::stoi(dead_url().substr(17));
  auto made = make_cloud_backend("r",
                                 {{"type", "redis_acl"},
                                  {"port", port},
                                  {"admin_password_file", secret_file("pw")},
                                  {"timeout_ms", 500}});
  REQUIRE(made);
  CHECK(code((*made)->revoke("tlm_A")) == ec::backend_unavailable);
  CHECK(code((*made)->create("A", 1000, {{"key_pattern", "* +@all"}}).error())
        == ec::invalid_request);
  CHECK(
    code(
      (*made)->create("A", 1000, {{"categories", {"all", "+@admin"}}}).error())
    == ec::invalid_request);
}

TEST_CASE("bad backend settings name the key to fix") {
  auto pw = secret_file("pw");
  struct bad_case {
    json settings;
    const char* key;
  };
  bad_case cases[] = {
    {{{"type", "influxdb"}, {"token_file", pw}, {"org", "o"}},
     "backends.b.url"},
    {{{"type", "influxdb"}, {"url", "http://x"}, {"org", "o"}},
     "backends.b.token_file"},
    {{{"type", "influxdb"},
      {"url", "http://x"},
      {"token_file", "/nonexistent"},
      {"org", "o"}},
     "backends.b.token_file"},
    {{{"type", "influxdb"}, {"url", "http://x"}, {"token_file", pw}},
     "backends.b.org"},
    {{{"type", "influxdb"},
      {"url", "ftp://x"},
      {"token_file", pw},
      {"org", "o"}},
     "backends.b.url"},
    {{{"type", "influxdb"},
      {"url", "http://x"},
      {"token_file", pw},
      {"org", "o"},
      {"timeout_ms", -1}},
     "backends.b.timeout_ms"},
    {{{"type", "influxdb"},
      {"url", "http://x"},
      {"token_file", pw},
      {"org", "o"},
      {"colour", "red"}},
     "backends.b.colour"},
    {{{"type", "influxdb1"},
      {"url", "http://x"},
      {"admin_user", "a"},
      {"admin_password_file", pw},
      {"default_database", "d"},
      {"default_privilege", "OWN"}},
     "backends.b.default_privilege"},
    {{{"type", "influxdb1"},
      {"url", "http://x"},
      {"admin_user", "a"},
      {"admin_password_file", pw}},
     "backends.b.default_database"},
    {{{"type", "redis_acl"},
      {"admin_password_file", pw},
      {"default_key_pattern", "a b"}},
     "backends.b.default_key_pattern"},
    {{{"type", "redis_acl"}, {"admin_password_file", pw}, {"port", 0}},
     "backends.b.port"},
  };
  for (auto& c : cases) {
    CAPTURE(c.settings.dump());
    auto made = make_cloud_backend("b", c.settings);
    REQUIRE(!made);
    CHECK(message_of(made.error()).find(c.key) != std::string::npos);
  }
}

// -- roles: the same rules for every remote backend ---------------------------

namespace {

/// One remote backend configured with a narrow role `narrow` (the default)
/// and a wider one, at a port nothing listens on: a create that passes the
/// role check fails as backend_unavailable, one refused by it as
/// invalid_request, before any request is sent.
struct role_case {
  const char* type;
  json settings;
  json narrowing; ///< options within `narrow`
  std::vector<std::pair<json, const char*>> widening; ///< options, option named
};

std::vector<role_case> role_cases() {
  auto url = dead_url();
  auto port = std::stoi(url.substr(17));
  auto pw = secret_file("pw");
  auto perm = [](const char* action, const char* type) {
    return json{{"action", action}, {"resource", {{"type", type}}}};
  };
  return {
    {"redis_acl",
     {{"type", "redis_acl"},
      {"port", port},
      {"admin_password_file", pw},
      {"timeout_ms", 500},
      {"default_role", "narrow"},
      {"roles",
       {{"narrow", {{"key_patterns", {"app:*"}}, {"categories", {"read"}}}},
        {"wide",
         {{"key_patterns", {"*"}}, {"categories", {"read", "write"}}}}}}},
     {{"key_pattern", "app:42:*"}, {"categories", {"read"}}},
     {{{{"key_pattern", "*"}, {"categories", {"all"}}}, "options.key_pattern"},
      {{{"categories", {"write"}}}, "options.categories"},
      {{{"categories", {"admin"}}}, "options.categories"},
      {{{"commands", {"acl"}}}, "options.commands"},
      {{{"key_pattern", "app:* +@all"}}, "options.key_pattern"},
      {{{"role", "wide"}, {"categories", {"all"}}}, "options.categories"}}},
    {"influxdb1",
     {{"type", "influxdb1"},
      {"url", url},
      {"admin_user", "admin"},
      {"admin_password_file", pw},
      {"timeout_ms", 500},
      {"default_role", "narrow"},
      {"roles",
       {{"narrow", {{"databases", {"metrics"}}, {"privilege", "READ"}}},
        {"wide", {{"databases", {"metrics", "logs"}}}}}}},
     {{"database", "metrics"}, {"privilege", "READ"}},
     {{{{"privilege", "WRITE"}}, "options.privilege"},
      {{{"database", "logs"}}, "options.database"},
      {{{"privilege", "ALL PRIVILEGES"}}, "options.privilege"},
      {{{"role", "wide"}, {"database", "_internal"}}, "options.database"}}},
    {"influxdb",
     {{"type", "influxdb"},
      {"url", url},
      {"token_file", pw},
      {"org_id", "0123456789abcdef"},
      {"timeout_ms", 500},
      {"default_role", "narrow"},
      {"roles",
       {{"narrow", {{"permissions", {perm("read", "buckets")}}}},
        {"wide",
         {{"permissions",
           {perm("read", "buckets"), perm("write", "buckets")}}}}}}},
     {{"permissions", {perm("read", "buckets")}}},
     {{{{"permissions", {perm("write", "buckets")}}}, "options.permissions[0]"},
      {{{"permissions", {perm("write", "authorizations")}}},
       "options.permissions[0]"},
      {{{"role", "wide"}, {"permissions", {perm("write", "users")}}},
       "options.permissions[0]"}}},
  };
}

} // namespace

TEST_CASE("conformance: options cannot widen a role of any remote backend") {
  for (auto& c : role_cases()) {
    CAPTURE(c.type);
    auto made = make_cloud_backend("b", c.settings);
    REQUIRE_MESSAGE(made, message_of(made.error()));
    auto& be = *made;
    for (auto& [options, named] : c.widening) {
      CAPTURE(options.dump());
      auto err = be->create("A", 1000, options).error();
      CHECK(code(err) == ec::invalid_request);
      CHECK(message_of(err).find(named) != std::string::npos);
    }
    // Within the role: it passes the check and reaches the (dead) server.
    CHECK(code(be->create("A", 1000, c.narrowing).error())
          == ec::backend_unavailable);
    CHECK(code(be->create("A", 1000, {{"role", "wide"}}).error())
          == ec::backend_unavailable);
    auto err = be->create("A", 1000, {{"role", "admin"}}).error();
    CHECK(code(err) == ec::invalid_request);
    CHECK(message_of(err).find("'admin'") != std::string::npos);
    CHECK(message_of(err).find("narrow, wide") != std::string::npos);
    CHECK(code(be->create("A", 1000, {{"role", 1}}).error())
          == ec::invalid_request);
  }
}

TEST_CASE("local: a role is refused, saying there are none") {
  auto made = make_cloud_backend("l", {{"type", "local"}});
  REQUIRE(made);
  auto err =
    (*made)->create("0123456789abcdefABCDEF", 1000, {{"role", "x"}}).error();
  CHECK(code(err) == ec::invalid_request);
  CHECK(message_of(err).find("no roles") != std::string::npos);
}

TEST_CASE("roles: the token's extra records the role and granted rights") {
  canned_server srv;
  json read_buckets{{"action", "read"}, {"resource", {{"type", "buckets"}}}};
  auto be = influxdb(
    srv.url(), {{"roles", {{"reader", {{"permissions", {read_buckets}}}}}}});
  srv.answer(201, {{"id", "0a1b2c3d4e5f6789"}, {"token", "t"}});
  auto token = be->create("L", 1000, {{"role", "reader"}});
  REQUIRE(token);
  auto extra = json::parse(token->extra);
  CHECK(extra["role"] == "reader");
  CHECK(extra["permissions"] == json::parse(srv.last_body)["permissions"]);
  CHECK(extra["permissions"][0]["action"] == "read");

  auto v1 = make_cloud_backend(
    "v1",
    {{"type", "influxdb1"},
     {"url", srv.url()},
     {"admin_user", "admin"},
     {"admin_password_file", secret_file("pw")},
     {"roles",
      {{"writer", {{"databases", {"db1", "db2"}}, {"privilege", "WRITE"}}}}}});
  REQUIRE(v1);
  srv.answer(200, {{"results", {{{"statement_id", 0}}}}});
  token = (*v1)->create("A", 1000, {{"database", "db2"}});
  REQUIRE(token);
  CHECK(json::parse(token->extra)
        == json{
          {"role", "writer"}, {"databases", {"db2"}}, {"privilege", "WRITE"}});
  CHECK(srv.last_body.find("GRANT%20WRITE%20ON%20%22db2%22")
        != std::string::npos);
  CHECK(token->extra.find(token->value.substr(7)) == std::string::npos);
}

TEST_CASE("roles: bad role settings refuse the start, naming the full key") {
  auto pw = secret_file("pw");
  json redis{{"type", "redis_acl"}, {"admin_password_file", pw}};
  json v1{{"type", "influxdb1"},
          {"url", "http://x"},
          {"admin_user", "a"},
          {"admin_password_file", pw}};
  json v2{{"type", "influxdb"},
          {"url", "http://x"},
          {"token_file", pw},
          {"org", "o"}};
  auto with = [](json base, json extra) {
    base.update(extra);
    return base;
  };
  json reader{{"key_patterns", {"a:*"}}, {"categories", {"read"}}};
  struct bad_case {
    json settings;
    const char* key;
  };
  bad_case cases[] = {
    {with(redis, {{"roles", {{"r", reader}}}, {"default_key_pattern", "a:*"}}),
     "backends.b.default_key_pattern cannot be combined with backends.b.roles"},
    {with(redis, {{"roles", {{"r", reader}, {"w", reader}}}}),
     "backends.b.default_role"},
    {with(redis, {{"roles", {{"r", reader}}}, {"default_role", "w"}}),
     "backends.b.default_role"},
    {with(redis, {{"default_role", "r"}}), "backends.b.default_role"},
    {with(redis, {{"roles", json::object()}}), "backends.b.roles"},
    {with(redis, {{"roles", {{"a b", reader}}}}), "backends.b.roles.a b"},
    {with(redis, {{"roles", {{"r", "read"}}}}), "backends.b.roles.r"},
    {with(redis, {{"roles", {{"r", with(reader, {{"categories", {"all"}}})}}}}),
     "backends.b.roles.r.categories"},
    {with(redis, {{"roles", {{"r", with(reader, {{"allow_dangerous", 1}})}}}}),
     "backends.b.roles.r.allow_dangerous"},
    {with(redis, {{"default_categories", {"read", "admin"}}}),
     "backends.b.default_categories"},
    {with(v1, {{"roles", {{"r", {{"databases", {"d"}}, {"admin", true}}}}}}),
     "backends.b.roles.r.admin"},
    {with(v1, {{"roles", {{"r", {{"databases", {"d"}}}}}},
               {"default_database", "d"}}),
     "backends.b.default_database cannot be combined"},
    {with(v1, {{"roles", {{"r", {{"databases", {"d e"}}}}}}}),
     "backends.b.roles.r.databases"},
    {with(
       v2,
       {{"roles",
         {{"r",
           {{"permissions",
             {{{"action", "write"}, {"resource", {{"type", "users"}}}}}}}}}}}),
     "backends.b.roles.r.permissions"},
    {with(v2, {{"default_permissions",
                {{{"action", "write"},
                  {"resource", {{"type", "authorizations"}}}}}}}),
     "backends.b.default_permissions"},
  };
  for (auto& c : cases) {
    CAPTURE(c.settings.dump());
    auto made = make_cloud_backend("b", c.settings);
    REQUIRE(!made);
    CHECK(message_of(made.error()).find(c.key) != std::string::npos);
  }
}
