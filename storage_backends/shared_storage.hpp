#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "core/shared_work.hpp"

namespace tlm {

/// Storage that several tlmd instances share (PostgreSQL): the database is
/// the truth about every lease, and each step that must happen once is a
/// conditional statement, so the database decides who does it. A claimed
/// lease belongs to one instance (its `owner`) until that instance is dead
/// (no heartbeat for `dead_after_ms`); then any other may claim it.
class shared_storage {
public:
  virtual ~shared_storage() = default;

  /// This instance's id in the database (new at every start).
  virtual const std::string& instance() const = 0;

  /// Reads the stored leases among `ids` in one statement (absent ones are
  /// left out): every instance reads the database, so reads come batched.
  virtual caf::expected<std::vector<lease>>
  get_many(const std::vector<std::string>& ids) = 0;

  /// Claims for revocation those of `ids` that are active and due at
  /// `now_ms` (or ours already, from a claim whose answer got lost).
  virtual caf::expected<std::vector<lease>>
  claim_due(const std::vector<std::string>& ids, int64_t now_ms) = 0;

  /// Claims live leases for clients' revokes: those of `ids` still live
  /// at `now_ms` that nobody claimed first.
  virtual caf::expected<std::vector<lease>>
  claim_live(const std::vector<std::string>& ids, int64_t now_ms) = 0;

  /// Claims every lease a revoke job covers: live ones issued up to its
  /// `created_ms`, and revocations under its filter nobody alive works on
  /// (or that are ours).
  virtual caf::expected<std::vector<lease>>
  claim_matching(const revoke_job& job, const orphan_query& q) = 0;

  /// Says this instance is alive, then claims orphaned jobs (with their
  /// leases) and up to `q.max` due or orphaned leases.
  virtual caf::expected<orphan_work> claim_orphans(const orphan_query& q) = 0;

  /// Renews a live lease: sets `ttl_ms` and `expires_ms` (`not_found` if
  /// it is not live anymore).
  virtual caf::expected<lease> renew_live(const live_update& u) = 0;

  /// Swaps the value of a live lease whose value is still `old_value`,
  /// with a fresh term (`invalid_token` if not).
  virtual caf::expected<lease> swap_live(const live_update& u) = 0;

  /// Counts of the stored leases by backend.
  virtual caf::expected<std::vector<stored_count>> count(int64_t now_ms) = 0;
};

} // namespace tlm
