#pragma once

// The manager's bulk revocation jobs (`revoke_prefix`): each a stored
// record plus its run-time progress, numbered so that a lease names its
// job in four bytes. Plain data and arithmetic: the manager does the I/O.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/lease.hpp"
#include "core/packed_lease.hpp"

namespace tlm {

class revoke_jobs {
public:
  /// Finished jobs are kept this long for `job` to report on.
  static constexpr int64_t finished_keep_ms = 24 * 3'600'000LL;

  /// Whether a lease falls under a job's filter.
  static bool matches(const packed_lease& x, const revoke_job& job);

  /// Adds a running job (its id, filter and start set); returns its
  /// number. Starts never go back in time, so a lease issued after a job
  /// began never matches it, also after a restart.
  uint32_t start(revoke_job job);

  /// Takes back a job whose record could not be stored.
  void drop(uint32_t number);

  /// Re-adds a stored job at start-up (or one taken over from a dead
  /// instance); its progress is counted again as its leases load. Returns
  /// its number, or 0 for one finished long ago (forget it).
  uint32_t restore(revoke_job job, int64_t now_ms);

  /// The running job a loaded lease belongs to: one whose filter it
  /// matches and that began after the lease was issued; 0 if none.
  uint32_t job_of_loaded(const packed_lease& x) const;

  /// Sets how many leases a new job matched.
  void set_total(uint32_t number, uint64_t total) {
    jobs_.at(number).record.total = total;
  }

  /// Moves a job's start to cover a lease it took that was issued later
  /// (by another instance whose clock runs a little ahead).
  void cover(uint32_t number, int64_t issued_ms) {
    auto& start = jobs_.at(number).record.created_ms;
    start = std::max(start, issued_ms);
    newest_start_ms_ = std::max(newest_start_ms_, start);
  }

  /// A lease joins job `number` (it was picked or loaded).
  void lease_added(uint32_t number, bool irrevocable);

  /// A lease of job `number` became irrevocable.
  void lease_gave_up(uint32_t number);

  /// A lease of job `number` is gone; true if that was its last one.
  bool lease_gone(uint32_t number, bool was_irrevocable);

  /// Marks a job done at `now_ms`; returns its record to store.
  const revoke_job& finish(uint32_t number, int64_t now_ms);

  /// Running jobs with no lease left (after a load), to finish.
  std::vector<uint32_t> without_leases() const;

  /// Forgets jobs finished more than a day before `now_ms`; returns their
  /// ids (to remove in storage).
  std::vector<std::string> forget_outdated(int64_t now_ms);

  std::optional<job_status> status(const std::string& id) const;
  job_status status(uint32_t number) const;

  /// The time a new job starts at: never before the newest.
  int64_t next_start(int64_t now_ms) const {
    return std::max(now_ms, newest_start_ms_);
  }

  /// Leases issued from now on are issued after every job's start.
  int64_t newest_start_ms() const {
    return newest_start_ms_;
  }

private:
  struct entry {
    revoke_job record;
    job_progress progress;
  };

  static bool outdated(const revoke_job& job, int64_t now_ms) {
    return job.state == job_state::done
           && job.finished_ms + finished_keep_ms < now_ms;
  }

  uint32_t add(revoke_job job);

  std::map<uint32_t, entry> jobs_; ///< In order of start.
  std::unordered_map<std::string, uint32_t> number_of_;
  uint32_t last_number_ = 0;
  int64_t newest_start_ms_ = 0;
};

} // namespace tlm
