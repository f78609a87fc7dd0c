#include <doctest/doctest.h>

#include "actors/lease_index.hpp"

using namespace tlm;

namespace {

lease_key key(const char* id) {
  return *lease_key::of(id);
}

packed_lease record(const char* backend, int64_t expires_ms) {
  lease x;
  x.backend = backend;
  x.backend_id = "b";
  x.value = "secret";
  x.expires_ms = expires_ms;
  return packed_lease{x};
}

uint64_t retrying(const lease_index& index, const char* backend) {
  auto i = index.trouble().find(backend);
  return i == index.trouble().end() ? 0 : i->second.retrying;
}

uint64_t irrevocable(const lease_index& index, const char* backend) {
  auto i = index.trouble().find(backend);
  return i == index.trouble().end() ? 0 : i->second.irrevocable;
}

} // namespace

TEST_CASE("every count follows the phase, in one place") {
  lease_index index;
  auto& a = index.insert(key("a"), record("r", 100), lease_phase::active);
  index.insert(key("b"), record("r", 100), lease_phase::active);
  CHECK(index.count(lease_phase::active) == 2);
  index.set_phase(a, lease_phase::revoking);
  CHECK(index.count(lease_phase::active) == 1);
  CHECK(index.count(lease_phase::revoking) == 1);
  CHECK(a.second.record.state == record_state::revoking);
  // A failure makes it count as retrying for its backend...
  index.record_failure(a, "down", true);
  index.set_phase(a, lease_phase::retry_wait);
  CHECK(a.second.record.attempts == 1);
  CHECK(retrying(index, "r") == 1);
  // ... a throttled try costs no attempt ...
  index.record_failure(a, "slow down", false);
  CHECK(a.second.record.attempts == 1);
  CHECK(retrying(index, "r") == 1);
  // ... and giving up moves it to irrevocable, stored as such.
  index.set_phase(a, lease_phase::irrevocable);
  CHECK(retrying(index, "r") == 0);
  CHECK(irrevocable(index, "r") == 1);
  CHECK(a.second.record.state == record_state::irrevocable);
  index.set_phase(a, lease_phase::retrying_irrevocable);
  CHECK(irrevocable(index, "r") == 1); // still given up while it tries
  auto gone = index.erase(key("a"));
  REQUIRE(gone);
  CHECK(gone->phase == lease_phase::retrying_irrevocable);
  CHECK(irrevocable(index, "r") == 0);
  CHECK(index.count(lease_phase::retrying_irrevocable) == 0);
  CHECK(index.size() == 1);
  CHECK(!index.erase(key("a")));
}

TEST_CASE("live and visible: one rule for get and list") {
  lease_entry e;
  e.record = record("r", 100);
  CHECK(lease_index::live(e, 99));
  CHECK(!lease_index::live(e, 100)); // expired, not yet revoked
  CHECK(!lease_index::visible(e, 100));
  for (auto p :
       {lease_phase::queued, lease_phase::revoking, lease_phase::retry_wait}) {
    e.phase = p;
    CHECK(!lease_index::visible(e, 0));
  }
  e.phase = lease_phase::irrevocable;
  CHECK(!lease_index::live(e, 0));
  CHECK(lease_index::visible(e, 1'000));
}

TEST_CASE("replacing a record keeps its phase and counts") {
  lease_index index;
  auto& a = index.insert(key("a"), record("r", 100), lease_phase::active);
  auto x = a.second.record.unpack("a");
  x.expires_ms = 500;
  index.update(a, x);
  CHECK(index.find("a")->second.record.expires_ms == 500);
  CHECK(index.count(lease_phase::active) == 1);
  CHECK(index.find("nope") == nullptr);
  CHECK(index.find("not a lease id with spaces and far too long") == nullptr);
}

TEST_CASE("the stored state of each phase") {
  CHECK(stored_state(lease_phase::active) == record_state::active);
  CHECK(stored_state(lease_phase::claiming) == record_state::active);
  CHECK(stored_state(lease_phase::queued) == record_state::revoking);
  CHECK(stored_state(lease_phase::revoking) == record_state::revoking);
  CHECK(stored_state(lease_phase::retry_wait) == record_state::revoking);
  CHECK(stored_state(lease_phase::irrevocable) == record_state::irrevocable);
  CHECK(stored_state(lease_phase::retrying_irrevocable)
        == record_state::irrevocable);
  CHECK(loaded_phase(record_state::active, false, false)
        == lease_phase::active);
  CHECK(loaded_phase(record_state::active, true, false)
        == lease_phase::retry_wait);
  CHECK(loaded_phase(record_state::active, false, true)
        == lease_phase::retry_wait);
  CHECK(loaded_phase(record_state::revoking, false, false)
        == lease_phase::retry_wait);
  CHECK(loaded_phase(record_state::irrevocable, false, true)
        == lease_phase::irrevocable);
}
