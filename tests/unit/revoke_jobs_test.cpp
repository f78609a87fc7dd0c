#include <doctest/doctest.h>

#include "actors/revoke_jobs.hpp"

using namespace tlm;

namespace {

revoke_job job(const char* id, const char* backend, const char* tag,
               int64_t created_ms) {
  revoke_job x;
  x.id = id;
  x.backend = backend;
  x.tag = tag;
  x.created_ms = created_ms;
  return x;
}

packed_lease issued(const char* backend, const char* tag, int64_t at) {
  lease x;
  x.backend = backend;
  x.backend_id = "b";
  x.issued_ms = at;
  x.tags = {tag};
  return packed_lease{x};
}

} // namespace

TEST_CASE("a job counts its leases down to done") {
  revoke_jobs jobs;
  auto n = jobs.start(job("j", "", "blue", 100));
  jobs.lease_added(n, false);
  jobs.lease_added(n, true);
  jobs.set_total(n, 2);
  auto status = jobs.status("j");
  REQUIRE(status);
  CHECK(status->job.state == job_state::running);
  CHECK(status->progress.remaining == 2);
  CHECK(status->progress.irrevocable == 1);
  CHECK(!jobs.lease_gone(n, true));
  CHECK(jobs.status(n).progress.irrevocable == 0);
  CHECK(jobs.lease_gone(n, false)); // the last one
  CHECK(jobs.finish(n, 150).state == job_state::done);
  CHECK(jobs.status(n).job.finished_ms == 150);
  CHECK(!jobs.status("other"));
}

TEST_CASE("finished jobs are forgotten after a day") {
  revoke_jobs jobs;
  auto n = jobs.start(job("j", "x", "", 100));
  jobs.finish(n, 200);
  CHECK(jobs.forget_outdated(200 + revoke_jobs::finished_keep_ms).empty());
  auto ids = jobs.forget_outdated(201 + revoke_jobs::finished_keep_ms);
  CHECK(ids == std::vector<std::string>{"j"});
  CHECK(!jobs.status("j"));
  // Restoring an outdated stored job refuses it.
  auto old = job("old", "x", "", 0);
  old.state = job_state::done;
  CHECK(!jobs.restore(old, revoke_jobs::finished_keep_ms + 1));
}

TEST_CASE("a loaded lease belongs to a running job that began after it") {
  revoke_jobs jobs;
  auto n = jobs.start(job("j", "local", "red", 1'000));
  CHECK(jobs.job_of_loaded(issued("local", "red", 999)) == n);
  CHECK(jobs.job_of_loaded(issued("local", "red", 1'000)) == n);
  CHECK(jobs.job_of_loaded(issued("local", "red", 1'001)) == 0); // later
  CHECK(jobs.job_of_loaded(issued("other", "red", 10)) == 0);
  CHECK(jobs.job_of_loaded(issued("local", "blue", 10)) == 0);
  // Starts never go back in time.
  CHECK(jobs.next_start(500) == 1'000);
  CHECK(jobs.newest_start_ms() == 1'000);
  CHECK(jobs.without_leases() == std::vector<uint32_t>{n});
  jobs.drop(n);
  CHECK(!jobs.status("j"));
}
