#include <doctest/doctest.h>

#include "actors/lease_loader.hpp"

using namespace tlm;

namespace {

lease stored(const char* id, const char* state, int64_t expires_ms) {
  lease x;
  x.id = id;
  x.backend = "local";
  x.backend_id = id;
  x.value = std::string{id} + ".v";
  x.issued_ms = 1;
  x.expires_ms = expires_ms;
  x.state = state;
  return x;
}

struct loader_fixture {
  lease_index index;
  expiry_schedule schedule;
  revoke_jobs jobs;
  lease_loader loader{index, schedule, jobs};
};

} // namespace

TEST_CASE_FIXTURE(loader_fixture, "loading puts each record in its phase") {
  std::vector<lease> page{
    stored("live1", state_active, 5'000),
    stored("expired1", state_active, 900),
    stored("revoking1", state_revoking, 5'000),
    stored("stuck1", state_irrevocable, 5'000),
    stored("intent1", state_pending, 5'000),
    stored("bad1", "exploded", 5'000),
  };
  auto out = loader.apply(page, 1'000);
  CHECK(index.find("live1")->second.phase == lease_phase::active);
  CHECK(index.find("live1")->second.due_ms == 5'000);
  CHECK(index.find("expired1")->second.phase == lease_phase::retry_wait);
  CHECK(index.find("expired1")->second.due_ms == 1'000); // due at once
  CHECK(index.find("revoking1")->second.phase == lease_phase::retry_wait);
  CHECK(index.find("stuck1")->second.phase == lease_phase::irrevocable);
  CHECK(index.find("intent1") == nullptr);
  CHECK(out.intents["local"] == std::set<std::string>{"intent1"});
  CHECK(loader.quarantined() == 1);
  CHECK(out.tokens["local"].size() == 4);
  CHECK(schedule.size() == 4);
  CHECK(index.count(lease_phase::active) == 1);
}

TEST_CASE_FIXTURE(loader_fixture, "a loaded lease rejoins its running job") {
  revoke_job job;
  job.id = "j";
  job.backend = "local";
  job.created_ms = 10;
  auto n = jobs.start(job);
  std::vector<lease> page{stored("old1", state_active, 5'000)};
  loader.apply(page, 100);
  auto& entry = index.find("old1")->second;
  CHECK(entry.job == n);
  CHECK(entry.phase == lease_phase::retry_wait); // dead: its job revokes it
  CHECK(jobs.status(n).progress.remaining == 1);
}

TEST_CASE("unreadable records and why") {
  auto x = stored("ok1", state_active, 1);
  CHECK(!lease_loader::unreadable(x));
  x.backend.clear();
  CHECK(lease_loader::unreadable(x) == "it names no backend");
  x = stored("ok1", state_active, 1);
  x.meta = "[1]";
  CHECK(lease_loader::unreadable(x) == "its meta is not a JSON object");
  x = stored("ok1", state_active, 1);
  x.backend_id.clear();
  CHECK(lease_loader::unreadable(x) == "it has no backend id");
}
