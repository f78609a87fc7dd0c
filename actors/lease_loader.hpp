#pragma once

// Start-up loading: one page of stored leases at a time into the index,
// the expiry schedule and the revoke jobs. Dead leases (expired while
// tlmd was down, revoking, irrevocable, or picked by a job) are due at
// once; unreadable records are kept aside in storage, never fatal.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/expiry_schedule.hpp"
#include "actors/lease_index.hpp"
#include "actors/revoke_jobs.hpp"
#include "core/lease.hpp"

namespace tlm {

class lease_loader {
public:
  /// What a page leaves for the manager to send on.
  struct outcome {
    /// Tokens each backend re-learns (the lease record is the truth).
    std::map<std::string, std::vector<cloud_token>> tokens;
    /// Intent records left by a crash, by backend, for the reconciler.
    std::map<std::string, std::set<std::string>> intents;
  };

  lease_loader(lease_index& index, expiry_schedule& schedule, revoke_jobs& jobs)
    : index_(index), schedule_(schedule), jobs_(jobs) {
    // nop
  }

  /// Loads one page of stored leases at `now_ms`.
  outcome apply(std::vector<lease>& page, int64_t now_ms);

  /// Records found unreadable so far.
  uint64_t quarantined() const {
    return quarantined_;
  }

  /// Why a stored record cannot be used, if it cannot.
  static std::optional<std::string> unreadable(const lease& x);

private:
  void add(const lease& record, int64_t now_ms);

  lease_index& index_;
  expiry_schedule& schedule_;
  revoke_jobs& jobs_;
  uint64_t quarantined_ = 0;
};

} // namespace tlm
