#pragma once

// The manager's leases: packed records by id, each with its phase, and
// every count the manager reports, kept up in one place as phases change.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "actors/lease_phase.hpp"
#include "core/lease_key.hpp"
#include "core/packed_lease.hpp"

namespace tlm {

struct lease_entry {
  packed_lease record;
  lease_phase phase = lease_phase::active;
  int64_t due_ms = 0; ///< The schedule entry that counts (`scheduled`).
  uint32_t job = 0;   ///< Number of the revoke job it belongs to; 0: none.
};

/// Leases of one backend in trouble, for `health`.
struct trouble_count {
  uint64_t retrying = 0;    ///< Dead, failed at least once, not given up.
  uint64_t irrevocable = 0; ///< Given up.
};

class lease_index {
public:
  using table = std::unordered_map<lease_key, lease_entry, lease_key_hash>;
  using slot = table::value_type;

  void reserve(size_t n) {
    leases_.reserve(n);
  }

  /// The lease with this id, or null.
  slot* find(std::string_view id);
  slot* find(const lease_key& key);

  /// Adds (or replaces) a lease in `phase`.
  slot& insert(const lease_key& key, packed_lease record, lease_phase phase);

  /// Forgets a lease; returns its entry (its job, its phase) if it was here.
  std::optional<lease_entry> erase(const lease_key& key);

  /// Moves a lease to `phase`; its record's state follows.
  void set_phase(slot& s, lease_phase phase);

  /// Records a failed revocation attempt (`counts`: as an attempt).
  void record_failure(slot& s, std::string_view last_error, bool counts);

  /// Replaces the record of an active lease (a renew, an exchange).
  void update(slot& s, const lease& updated);

  /// Usable by a client at `now_ms`.
  static bool live(const lease_entry& e, int64_t now_ms) {
    return e.phase == lease_phase::active && now_ms < e.record.expires_ms;
  }

  /// Shown by `get`: live, or given up (with its last error, for
  /// operators). The same rule as `list` (core/list_view.hpp).
  static bool visible(const lease_entry& e, int64_t now_ms) {
    return live(e, now_ms) || given_up(e.phase);
  }

  size_t count(lease_phase p) const {
    return by_phase_[static_cast<size_t>(p)];
  }

  size_t size() const {
    return leases_.size();
  }

  /// Leases in trouble by backend name (also names no longer configured).
  const std::map<std::string, trouble_count, std::less<>>& trouble() const {
    return trouble_;
  }

  table::iterator begin() {
    return leases_.begin();
  }
  table::iterator end() {
    return leases_.end();
  }

private:
  /// Counts (`add`) or uncounts an entry; around every change of phase or
  /// last error, so each counter changes in this one place.
  void tally(const lease_entry& e, bool add);

  table leases_;
  std::array<size_t, lease_phase_count> by_phase_{};
  std::map<std::string, trouble_count, std::less<>> trouble_;
};

} // namespace tlm
