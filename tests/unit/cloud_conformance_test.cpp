// The cloud backend conformance suite: one set of cases run against every
// backend through `make_cloud_backend` and the `cloud_backend` interface,
// the code that serves clients behind the cloud actor.
//
// Which backends, and how to reach their services, comes from a table: a
// JSON file named by TLM_CLOUD_CONFORMANCE, written by
// tests/integration/test_cloud_conformance.py after it has started the
// servers (one line per backend there). Without it, the table holds only
// `local`, which needs no server. Each entry:
//
//   {"type": "redis_acl",
//    "settings": {...},         a working configuration
//    "create_options": {...},   options of a create that must succeed
//    "bad_credential": {...},   the same service, a wrong admin credential
//    "unreachable": {...},      a port nothing listens on
//    "silent": {...}}           a server that accepts and never answers,
//                               with a short timeout_ms
//
// The last three are null for a backend without a service.

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "cloud_backends/registry.hpp"
#include "core/error.hpp"
#include "core/secrets.hpp"

using namespace tlm;
using json = nlohmann::json;

namespace {

struct conformance_entry {
  std::string type;
  json settings;
  json create_options;
  json bad_credential;
  json unreachable;
  json silent;
};

std::vector<conformance_entry> conformance_table() {
  json table = json::array({{{"type", "local"},
                             {"settings", {{"type", "local"}}},
                             {"create_options", json::object()}}});
  if (auto* path = std::getenv("TLM_CLOUD_CONFORMANCE")) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in, "cannot read TLM_CLOUD_CONFORMANCE=" << path);
    table = json::parse(in);
  }
  std::vector<conformance_entry> result;
  for (auto& e : table)
    result.push_back({e.at("type"), e.at("settings"),
                      e.value("create_options", json::object()),
                      e.value("bad_credential", json{}),
                      e.value("unreachable", json{}),
                      e.value("silent", json{})});
  return result;
}

/// The name the backend has in the config: errors name its keys.
constexpr const char* backend_name = "conf";

std::shared_ptr<cloud_backend> make(const json& settings) {
  auto made = make_cloud_backend(backend_name, settings);
  REQUIRE_MESSAGE(made, message_of(made.error()));
  return *made;
}

std::string fresh_lease_id() {
  return random_id(16); // what the lease manager uses
}

ec code(const caf::error& err) {
  return code_of(err);
}

/// The tokens of `get_all` made for `lease_id`.
std::vector<cloud_token> listed(cloud_backend& be,
                                const std::string& lease_id) {
  auto all = be.get_all();
  REQUIRE_MESSAGE(all, message_of(all.error()));
  std::vector<cloud_token> result;
  for (auto& token : *all)
    if (token.lease_id == lease_id)
      result.push_back(token);
  return result;
}

cloud_token create(cloud_backend& be, const conformance_entry& e,
                   const std::string& lease_id) {
  auto token = be.create(lease_id, 60'000, e.create_options);
  REQUIRE_MESSAGE(token, message_of(token.error()));
  return *token;
}

/// Every call that reaches the service fails with `expected`; returns the
/// message of the create's error.
std::string every_call_fails(cloud_backend& be, const conformance_entry& e,
                             ec expected) {
  auto made = be.create(fresh_lease_id(), 60'000, e.create_options);
  REQUIRE(!made);
  CHECK(code(made.error()) == expected);
  auto all = be.get_all();
  REQUIRE(!all);
  CHECK(code(all.error()) == expected);
  CHECK(code(be.revoke("tlm_" + fresh_lease_id())) == expected);
  return message_of(made.error());
}

} // namespace

TEST_SUITE_BEGIN("cloud_conformance");

TEST_CASE("cloud conformance: create makes a token the service knows") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    auto be = make(e.settings);
    auto id = fresh_lease_id();
    auto token = create(*be, e, id);
    CHECK(!token.backend_id.empty());
    CHECK(!token.value.empty());
    CHECK(json::parse(token.extra).is_object());
    auto found = listed(*be, id);
    REQUIRE(found.size() == 1);
    CHECK(found[0].backend_id == token.backend_id);
    CHECK(found[0].lease_id == id);
    CHECK(!be->revoke(token.backend_id));
  }
}

TEST_CASE("cloud conformance: a revoked token is gone") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    auto be = make(e.settings);
    auto id = fresh_lease_id();
    auto token = create(*be, e, id);
    REQUIRE(listed(*be, id).size() == 1);
    auto err = be->revoke(token.backend_id);
    CHECK_MESSAGE(!err, message_of(err));
    CHECK(listed(*be, id).empty());
  }
}

TEST_CASE("cloud conformance: revoking an unknown token succeeds") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    auto be = make(e.settings);
    auto token = create(*be, e, fresh_lease_id());
    REQUIRE(!be->revoke(token.backend_id));
    // Gone now: a retry after a lost reply must not fail forever.
    auto err = be->revoke(token.backend_id);
    CHECK_MESSAGE(!err, message_of(err));
  }
}

TEST_CASE("cloud conformance: get_all finds each marked token by lease id") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    auto be = make(e.settings);
    std::vector<std::pair<std::string, cloud_token>> made;
    for (int i = 0; i < 3; ++i) {
      auto id = fresh_lease_id();
      made.emplace_back(id, create(*be, e, id));
    }
    for (auto& [id, token] : made) {
      CAPTURE(id);
      auto found = listed(*be, id);
      REQUIRE(found.size() == 1);
      CHECK(found[0].backend_id == token.backend_id);
      CHECK(json::parse(found[0].extra).is_object());
    }
    for (auto& [id, token] : made)
      CHECK(!be->revoke(token.backend_id));
    for (auto& [id, token] : made)
      CHECK(listed(*be, id).empty());
  }
}

TEST_CASE("cloud conformance: bad options and settings are refused, named") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    auto be = make(e.settings);
    auto id = fresh_lease_id();
    auto made = be->create(id, 60'000, {{"no_such_option", 1}});
    REQUIRE(!made);
    CHECK(code(made.error()) == ec::invalid_request);
    CHECK(message_of(made.error()).find("no_such_option") != std::string::npos);
    CHECK(listed(*be, id).empty()); // nothing half-made
    auto settings = e.settings;
    settings["no_such_setting"] = 1;
    auto refused = make_cloud_backend(backend_name, settings);
    REQUIRE(!refused);
    CHECK(code(refused.error()) == ec::invalid_request);
    CHECK(message_of(refused.error()).find("backends.conf.no_such_setting")
          != std::string::npos);
  }
}

TEST_CASE("cloud conformance: an unreachable service is backend_unavailable") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    if (e.unreachable.is_null())
      continue; // no service to reach
    auto be = make(e.unreachable);
    every_call_fails(*be, e, ec::backend_unavailable);
  }
}

TEST_CASE("cloud conformance: a rejected admin credential names the setting") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    if (e.bad_credential.is_null())
      continue; // no credential of ours
    auto be = make(e.bad_credential);
    auto text = every_call_fails(*be, e, ec::backend_error);
    CAPTURE(text);
    CHECK(text.find("rejected the admin") != std::string::npos);
    CHECK(text.find("backends.conf.") != std::string::npos);
  }
}

TEST_CASE("cloud conformance: a silent service times out as unavailable") {
  for (auto& e : conformance_table()) {
    CAPTURE(e.type);
    if (e.silent.is_null())
      continue; // no service to wait for
    auto be = make(e.silent);
    auto timeout = be->timeout();
    CHECK(timeout.count() == e.silent.at("timeout_ms").get<int64_t>());
    auto start = std::chrono::steady_clock::now();
    auto text = every_call_fails(*be, e, ec::backend_unavailable);
    auto took = std::chrono::steady_clock::now() - start;
    CAPTURE(text);
    CHECK(text.find("in time") != std::string::npos);
    // Three calls, each given up after about one timeout (a pooled
    // connection may be retried once on a fresh one).
    CHECK(took < 3 * 3 * timeout);
  }
}

TEST_SUITE_END();
