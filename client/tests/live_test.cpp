// The library against a real tlmd, started by
// tests/integration/test_client_library.py, which passes its address in
// TLM_TEST_ADDR (and TLM_TEST_DOWN_ADDR, a port where nothing listens;
// TLM_TEST_API_KEY when the server wants one).
// Not registered with ctest on its own: it needs that server.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cstdlib>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "tlm/client.hpp"

using namespace tlm;

namespace {

connection_options options_from(const char* var) {
  const char* addr = std::getenv(var);
  REQUIRE_MESSAGE(addr != nullptr, var, " is not set");
  connection_options opts;
  REQUIRE(parse_address(addr, opts));
  if (const char* key = std::getenv("TLM_TEST_API_KEY"))
    opts.api_key = key;
  return opts;
}

client& live() {
  static client c{options_from("TLM_TEST_ADDR")};
  return c;
}

create_request local_lease(int64_t ttl, bool renewable = true) {
  create_request req;
  req.backend = "local";
  req.ttl_ms = ttl;
  req.renewable = renewable;
  return req;
}

/// A tag no earlier run on the same server used.
std::string fresh_tag(const char* base) {
  return base + std::to_string(wall_clock::now().time_since_epoch().count());
}

} // namespace

TEST_CASE("create, get, renew, revoke") {
  auto created = live().create_lease(local_lease(60000));
  REQUIRE_MESSAGE(created, created.error().message);
  CHECK(created->value.rfind(created->id + ".", 0) == 0);
  auto got = live().get_lease(created->id);
  REQUIRE(got);
  CHECK(got->value == created->value);
  auto renewed = live().renew_lease(created->id, 120000);
  REQUIRE(renewed);
  CHECK(renewed->lease.expires > created->expires);
  CHECK(renewed->lease.ttl_ms == 120000);
  auto revoked = live().revoke_lease(created->id);
  REQUIRE(revoked);
  CHECK(revoked->confirmed);
  auto gone = live().get_lease(created->id);
  REQUIRE_FALSE(gone);
  CHECK(gone.error().code == errc::not_found);
}

TEST_CASE("failures carry the server's code and message") {
  auto bad_ttl = live().create_lease(local_lease(1));
  REQUIRE_FALSE(bad_ttl);
  CHECK(bad_ttl.error().code == errc::invalid_request);
  CHECK(bad_ttl.error().message.find("ttl") != std::string::npos);
  auto fixed = live().create_lease(local_lease(60000, false));
  REQUIRE(fixed);
  auto renew = live().renew_lease(fixed->id);
  REQUIRE_FALSE(renew);
  CHECK(renew.error().code == errc::not_renewable);
  create_request unknown;
  unknown.backend = "nope";
  CHECK(live().create_lease(unknown).error().code == errc::unknown_backend);
  CHECK(live().exchange_token("not-a-token").error().code
        == errc::invalid_token);
}

TEST_CASE("exchange swaps a local token and merges meta") {
  auto created = live().create_lease(local_lease(60000));
  REQUIRE(created);
  auto swapped = live().exchange_token(created->value, R"({"step":1})");
  REQUIRE(swapped);
  CHECK(swapped->id == created->id);
  CHECK(swapped->value != created->value);
  CHECK(swapped->meta == R"({"step":1})");
  CHECK(live().exchange_token(created->value).error().code
        == errc::invalid_token);
}

TEST_CASE("the pager returns every lease once, across pages") {
  std::set<std::string> made;
  auto tag = fresh_tag("paged");
  for (int i = 0; i < 23; ++i) {
    auto req = local_lease(60000);
    req.tags = {tag};
    auto x = live().create_lease(req);
    REQUIRE(x);
    made.insert(x->id);
  }
  list_filter filter;
  filter.tag = tag;
  filter.limit = 5;
  std::set<std::string> seen;
  auto pager = live().list_all(filter);
  int count = 0;
  while (auto next = pager.next()) {
    REQUIRE(*next);
    CHECK((*next)->value.empty()); // list never shows values
    seen.insert((*next)->id);
    ++count;
  }
  CHECK(count == 23);
  CHECK(seen == made);
}

TEST_CASE("pipelined futures and callbacks all get their own reply") {
  std::vector<std::future<result<lease>>> futures;
  for (int i = 0; i < 300; ++i)
    futures.push_back(live().create_async(local_lease(60000)));
  std::set<std::string> ids;
  for (auto& f : futures) {
    auto x = f.get();
    REQUIRE(x);
    ids.insert(x->id);
  }
  CHECK(ids.size() == 300);
  // Gets pipelined behind each other answer for their own lease.
  std::vector<std::pair<std::string, std::future<result<lease>>>> gets;
  for (auto& id : ids)
    gets.emplace_back(id, live().get_async(id));
  for (auto& [id, f] : gets) {
    auto x = f.get();
    REQUIRE(x);
    CHECK(x->id == id);
  }
}

TEST_CASE("revoke_prefix starts a job that job reports") {
  auto tag = fresh_tag("bulk");
  for (int i = 0; i < 3; ++i) {
    auto req = local_lease(60000);
    req.tags = {tag};
    REQUIRE(live().create_lease(req));
  }
  auto started = live().start_revoke_prefix("", tag);
  REQUIRE_MESSAGE(started, started.error().message);
  CHECK(started->total == 3);
  auto progress = live().get_job(started->id);
  REQUIRE(progress);
  CHECK(progress->id == started->id);
  CHECK(live().get_job("no-such-job").error().code == errc::not_found);
}

TEST_CASE("health answers") {
  auto h = live().get_health();
  REQUIRE(h);
  CHECK(h->status == "ok");
  CHECK(h->json.find("\"backends\"") != std::string::npos);
}

TEST_CASE("a server that is not there is connection_failed, not a hang") {
  client down{options_from("TLM_TEST_DOWN_ADDR")};
  auto r = down.get_health();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::connection_failed);
  CHECK(r.error().message.find("cannot") != std::string::npos);
}

TEST_CASE("TLS is refused until the server has it, never sent in plain") {
  auto opts = options_from("TLM_TEST_ADDR");
  opts.tls.enabled = true;
  client tls{opts};
  auto r = tls.get_health();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unsupported);
  CHECK(r.error().message.find("issue 13") != std::string::npos);
}

TEST_CASE("a wrong API key is unauthorized, with the server's message") {
  if (std::getenv("TLM_TEST_API_KEY") == nullptr)
    return; // the server takes no keys
  auto opts = options_from("TLM_TEST_ADDR");
  opts.api_key = "wrong-key";
  client wrong{opts};
  auto r = wrong.get_health();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::unauthorized);
}

TEST_CASE("a callback may call the client again, also to reconnect") {
  if (live().options().transport != transport_kind::tcp)
    return; // only TCP closes a connection after too_large
  client c{options_from("TLM_TEST_ADDR")};
  // A line over 1 MiB makes tlmd answer too_large and close the
  // connection. The create's callback sends a health, which may still go
  // out on the closing connection and fail (calls in flight are never
  // resent); its callback then sends again, from the I/O thread of the
  // dead connection, which connects anew.
  auto huge = local_lease(60000);
  huge.description = std::string(1100 * 1024, 'x');
  std::promise<failure> refused;
  std::promise<result<tlm::health>> again;
  int tries = 0;
  std::function<void(result<tlm::health>)> retry;
  retry = [&](result<tlm::health> r) {
    if (!r && r.error().code == errc::connection_failed && ++tries < 5) {
      c.health(retry);
      return;
    }
    again.set_value(std::move(r));
  };
  c.create(huge, [&](result<lease> r) {
    refused.set_value(r ? failure{errc::internal, "created"} : r.error());
    c.health(retry);
  });
  auto why = refused.get_future().get();
  CHECK((why.code == errc::too_large || why.code == errc::connection_failed));
  auto later = again.get_future().get();
  REQUIRE_MESSAGE(later, later.error().message);
  CHECK(later->status == "ok");
}

TEST_CASE("pipelining more than tlmd buffers never deadlocks") {
  // 4 threads pipeline 150 creates of 60 KB each way on one connection:
  // far more than the 8 MiB of replies tlmd holds for a connection before
  // it stops reading, so the client must go on reading replies while a
  // write waits for the server.
  auto big = local_lease(60000);
  big.meta = R"({"pad":")" + std::string(60 * 1024, 'p') + R"("})";
  std::vector<std::future<result<lease>>> futures;
  std::mutex mtx;
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t)
    senders.emplace_back([&] {
      for (int i = 0; i < 150; ++i) {
        auto f = live().create_async(big);
        std::lock_guard guard{mtx};
        futures.push_back(std::move(f));
      }
    });
  for (auto& t : senders)
    t.join();
  int ok = 0;
  for (auto& f : futures) {
    auto x = f.get();
    if (x)
      ++ok;
    else
      FAIL_CHECK(x.error().message);
  }
  CHECK(ok == 600);
}
