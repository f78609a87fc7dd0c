// The TCP and HTTP servers over the real actor stack (memory storage, local
// backend) on loopback ports: framing, ordering, limits and auth.

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/StreamSocket.h>
#include <caf/all.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "actors/lease_manager.hpp"
#include "api/http_server.hpp"
#include "api/listener.hpp"
#include "api/tcp_server.hpp"
#include "cloud_backends/cloud_actor.hpp"
#include "cloud_backends/local/local_backend.hpp"
#include "storage_backends/memory/memory_backend.hpp"
#include "storage_backends/storage_actor.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

/// A whole tlmd in-process, on free loopback ports.
struct api_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  api_keys keys;
  std::unique_ptr<dispatcher> disp;
  std::unique_ptr<tcp_server> tcp;
  std::unique_ptr<http_server> http;
  std::vector<caf::actor> actors;

  explicit api_fixture(api_keys k = {}, tcp_limits limits = {})
    : keys(std::move(k)) {
    cfg.add_message_types<caf::id_block::tlm>();
    sys = std::make_unique<caf::actor_system>(cfg);
    lease_manager_config mcfg;
    mcfg.storage = spawn_storage_actor(*sys, make_memory_backend());
    mcfg.backends.push_back(
      {"local",
       spawn_cloud_actor(*sys,
                         *make_local_backend("local", {{"type", "local"}})),
       true, false});
    auto manager = spawn_lease_manager(*sys, mcfg);
    actors = {caf::actor_cast<caf::actor>(manager),
              caf::actor_cast<caf::actor>(mcfg.storage),
              caf::actor_cast<caf::actor>(mcfg.backends[0].actor)};
    disp = std::make_unique<dispatcher>(manager, keys,
                                        std::chrono::seconds(10));
    Poco::Net::SocketAddress any("127.0.0.1", 0);
    tcp = std::make_unique<tcp_server>(*disp, listen_exclusively(any), 16,
                                       limits);
    http = std::make_unique<http_server>(*disp, listen_exclusively(any), 4);
    tcp->start();
    http->start();
  }

  ~api_fixture() {
    tcp->stop();
    http->stop();
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sys->await_all_actors_done();
  }

  Poco::Net::StreamSocket connect_tcp() {
    Poco::Net::StreamSocket s(
      Poco::Net::SocketAddress("127.0.0.1", tcp->port()));
    s.setReceiveTimeout(Poco::Timespan(10, 0));
    return s;
  }

  /// Reads `n` reply lines (or fewer if the server closes).
  static std::vector<json> read_lines(Poco::Net::StreamSocket& s, size_t n) {
    std::vector<json> out;
    std::string buf;
    char chunk[65536];
    while (out.size() < n) {
      auto nl = buf.find('\n');
      if (nl != std::string::npos) {
        out.push_back(json::parse(buf.substr(0, nl)));
        buf.erase(0, nl + 1);
        continue;
      }
      int got = s.receiveBytes(chunk, sizeof(chunk));
      if (got <= 0)
        break;
      buf.append(chunk, static_cast<size_t>(got));
    }
    return out;
  }

  static void send_all(Poco::Net::StreamSocket& s, const std::string& text) {
    size_t sent = 0;
    while (sent < text.size())
      sent += static_cast<size_t>(
        s.sendBytes(text.data() + sent, static_cast<int>(text.size() - sent)));
  }

  /// POSTs `body`, announcing `length` bytes (default: the body's size).
  std::pair<int, json> post(const std::string& path, const std::string& body,
                            const std::string& bearer = "",
                            std::streamsize length = -1) {
    Poco::Net::HTTPClientSession session("127.0.0.1", http->port());
    Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_POST, path,
                               Poco::Net::HTTPMessage::HTTP_1_1);
    req.setContentLength(
      length >= 0 ? length : static_cast<std::streamsize>(body.size()));
    if (!bearer.empty())
      req.set("Authorization", "Bearer " + bearer);
    session.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    auto& in = session.receiveResponse(resp);
    std::string text{std::istreambuf_iterator<char>(in), {}};
    return {resp.getStatus(), json::parse(text)};
  }
};

} // namespace

TEST_CASE("TCP answers pipelined requests in order, one line each") {
  api_fixture f;
  auto s = f.connect_tcp();
  std::string batch;
  for (int i = 0; i < 500; ++i)
    batch +=
      json{{"action", i % 2 ? "health" : "create"}, {"request_id", i}}.dump()
      + "\n";
  batch += "\n"; // a blank line is not a request
  f.send_all(s, batch);
  auto replies = f.read_lines(s, 500);
  REQUIRE(replies.size() == 500);
  for (int i = 0; i < 500; ++i) {
    CHECK(replies[i]["request_id"] == i);
    CHECK(replies[i]["result"] == "success");
  }
}

TEST_CASE("TCP: a message over 1 MiB gets too_large and the connection "
          "closes; others keep working") {
  api_fixture f;
  auto other = f.connect_tcp();
  auto s = f.connect_tcp();
  f.send_all(s, R"({"action":"health","request_id":"before"})"
                "\n"
                  + std::string(max_message_bytes + 10, ' '));
  auto replies = f.read_lines(s, 3);
  REQUIRE(replies.size() == 2); // then the server closed
  CHECK(replies[0]["request_id"] == "before");
  CHECK(replies[1]["error"] == "too_large");
  f.send_all(other, "{\"action\":\"health\"}\n");
  CHECK(f.read_lines(other, 1).at(0)["result"] == "success");
}

TEST_CASE("TCP: bad lines get failures and the connection stays usable") {
  api_fixture f;
  auto s = f.connect_tcp();
  f.send_all(s, "not json\n[1]\n{\"action\":\"fly\"}\n"
                "{\"action\":\"create\",\"options\":{\"ttl\":-1}}\n"
                "{\"action\":\"health\"}\n");
  auto replies = f.read_lines(s, 5);
  REQUIRE(replies.size() == 5);
  for (int i = 0; i < 4; ++i)
    CHECK(replies[i]["error"] == "invalid_request");
  CHECK(replies[4]["result"] == "success");
}

TEST_CASE("TCP auth: nothing but auth before a valid key") {
  api_fixture f{api_keys::of({"k1"})};
  auto s = f.connect_tcp();
  f.send_all(s, "{\"action\":\"health\"}\n"
                "{\"action\":\"auth\",\"api_key\":\"wrong\"}\n"
                "{\"action\":\"health\"}\n"
                "{\"action\":\"auth\",\"api_key\":\"k1\"}\n"
                "{\"action\":\"health\"}\n");
  auto replies = f.read_lines(s, 5);
  REQUIRE(replies.size() == 5);
  CHECK(replies[0]["error"] == "unauthorized");
  CHECK(replies[1]["error"] == "unauthorized");
  CHECK(replies[2]["error"] == "unauthorized");
  CHECK(replies[3]["result"] == "success");
  CHECK(replies[4]["result"] == "success");
}

TEST_CASE("HTTP: statuses mirror results; bodies over 1 MiB get 413") {
  api_fixture f{api_keys::of({"k1"})};
  CHECK(f.post("/v1/actions", R"({"action":"health"})").first == 401);
  auto [status, body] = f.post("/v1/leases", R"({"options":{"ttl":5000}})",
                               "k1");
  CHECK(status == 201);
  auto id = body["lease"]["id"].get<std::string>();
  CHECK(f.post("/v1/actions", json{{"action", "get"}, {"token_id", id}}.dump(),
               "k1")
          .first
        == 200);
  CHECK(f.post("/v1/actions",
               R"({"action":"renew","token_id":")" + id + R"("})", "k1")
          .second["error"]
        == "not_renewable");
  CHECK(f.post("/v1/actions", "{", "k1").first == 400);
  CHECK(
    f.post("/v1/actions", R"({"action":"get","token_id":"nope"})", "k1").first
    == 404);
  // The server answers from the announced length, before reading a byte.
  auto big = f.post("/v1/actions", "{}", "k1",
                    static_cast<std::streamsize>(max_message_bytes + 1));
  CHECK(big.first == 413);
  CHECK(big.second["error"] == "too_large");
}

TEST_CASE("TCP: batches cut by reply bytes still answer every line in "
          "order") {
  tcp_limits limits;
  limits.reply_bytes_per_connection = 4096;
  limits.reply_bytes_total = 8192;
  api_fixture f{{}, limits};
  auto s = f.connect_tcp();
  std::string batch;
  // Creates reserve their line plus 1 KiB: two or three fit a batch, and a
  // line larger than the budget still goes out alone.
  for (int i = 0; i < 300; ++i) {
    json req{{"action", "create"}, {"request_id", i}};
    if (i % 50 == 0)
      req["meta"] = {{"pad", std::string(6000, 'x')}};
    batch += req.dump() + "\n";
  }
  f.send_all(s, batch);
  auto replies = f.read_lines(s, 300);
  REQUIRE(replies.size() == 300);
  for (int i = 0; i < 300; ++i) {
    CHECK(replies[i]["request_id"] == i);
    CHECK(replies[i]["result"] == "success");
  }
}

TEST_CASE("TCP auth: a line over 4 KiB before auth gets too_large and "
          "closes") {
  api_fixture f{api_keys::of({"secret-key"})};
  auto s = f.connect_tcp();
  f.send_all(
    s, R"({"action":"health","request_id":1})"
       "\n"
         + json{{"action", "auth"}, {"api_key", std::string(5000, 'k')}}.dump()
         + "\n");
  auto replies = f.read_lines(s, 3);
  REQUIRE(replies.size() == 2);
  CHECK(replies[0]["error"] == "unauthorized");
  CHECK(replies[0]["request_id"] == 1);
  CHECK(replies[1]["error"] == "too_large");
}
