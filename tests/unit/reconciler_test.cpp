// The reconciler on its own, on simulated time: it finds the tokens of
// intent records by their lease id, revokes them and drops the records.

#include <set>

#include "actors/reconciler.hpp"
#include "cloud_backends/cloud_actor.hpp"
#include "core/error.hpp"
#include "storage_backends/memory/memory_backend.hpp"
#include "storage_backends/storage_actor.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace std::chrono_literals;
using namespace tlm;

namespace {

/// Tokens marked with lease ids; `get_all` fails while `down`.
class marked_backend : public cloud_backend {
public:
  bool down = false;
  std::set<std::string> live; ///< backend ids "b-<lease id>"
  bool blocking() const override {
    return false;
  }
  caf::expected<cloud_token> create(const std::string& id, int64_t,
                                    const nlohmann::json&) override {
    live.insert("b-" + id);
    return cloud_token{"b-" + id, "v", "{}", {}};
  }
  caf::error revoke(const std::string& id) override {
    live.erase(id);
    return caf::none;
  }
  caf::expected<std::vector<cloud_token>> get_all() override {
    if (down)
      return make_error(ec::backend_unavailable, "down");
    std::vector<cloud_token> result;
    for (auto& id : live)
      result.push_back({id, "", "{}", id.substr(2)});
    return result;
  }
  std::string describe() const override {
    return "marked";
  }
};

struct reconciler_fixture : test::actor_fixture {
  std::shared_ptr<marked_backend> cloud = std::make_shared<marked_backend>();
  storage_actor storage = own(spawn_storage_actor(*sys, make_memory_backend()));
  reconciler_actor reconciler;

  reconciler_fixture() {
    reconciler_config cfg;
    cfg.backends.push_back({"remote", own(spawn_cloud_actor(*sys, cloud)),
                            false, true, std::chrono::seconds(5)});
    cfg.storage = storage;
    cfg.retry_ms = 30'000;
    reconciler = own(spawn_reconciler(*sys, cfg));
  }

  void store_intent(const std::string& id) {
    lease x;
    x.id = id;
    x.backend = "remote";
    x.state = state_pending;
    x.expires_ms = 1;
    REQUIRE(call<atom::ok>(storage, atom::save_v, x));
  }
};

} // namespace

TEST_CASE_FIXTURE(reconciler_fixture, "the reconciler revokes the tokens "
                                      "of intents and drops the records") {
  cloud->live = {"b-aaaa", "b-bbbb", "b-keep"};
  store_intent("aaaa");
  store_intent("bbbb");
  caf::anon_send(reconciler, atom::reconcile_v, std::string{"remote"},
                 std::set<std::string>{"aaaa", "bbbb"}, int64_t{0});
  sched->run();
  CHECK(cloud->live == std::set<std::string>{"b-keep"});
  sched->run();
  CHECK(!stored_lease(storage, std::string{"aaaa"}));
  CHECK(!stored_lease(storage, std::string{"bbbb"}));
}

TEST_CASE_FIXTURE(reconciler_fixture, "an unreachable backend is looked at "
                                      "again after the retry delay") {
  cloud->down = true;
  cloud->live = {"b-cccc"};
  store_intent("cccc");
  caf::anon_send(reconciler, atom::reconcile_v, std::string{"remote"},
                 std::set<std::string>{"cccc"}, int64_t{0});
  sched->run();
  CHECK(cloud->live.size() == 1);
  cloud->down = false;
  advance(29'000ms);
  CHECK(cloud->live.size() == 1); // not before reconcile_retry_ms
  advance(1'000ms);
  CHECK(cloud->live.empty());
  CHECK(!stored_lease(storage, std::string{"cccc"}));
}

TEST_CASE_FIXTURE(reconciler_fixture, "a delayed look waits its delay") {
  cloud->live = {"b-dddd"};
  caf::anon_send(reconciler, atom::reconcile_v, std::string{"remote"},
                 std::set<std::string>{"dddd"}, int64_t{10'000});
  sched->run();
  CHECK(cloud->live.size() == 1);
  advance(10'000ms);
  CHECK(cloud->live.empty());
}
