#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "core/lease_key.hpp"

namespace tlm {

/// Deadlines of many leases behind one timer: a min-heap of (due, id).
/// Entries are never removed early; the owner ignores an entry whose due
/// time no longer matches the lease (lazy deletion), which keeps renewals
/// O(log n) and needs no per-lease timer.
class expiry_schedule {
public:
  struct entry {
    int64_t due_ms;
    lease_key key;
    bool operator>(const entry& other) const {
      return due_ms > other.due_ms;
    }
  };

  void add(int64_t due_ms, const lease_key& key);

  /// The earliest due time, if any.
  std::optional<int64_t> earliest() const;

  /// Removes and returns the earliest entry if it is due at `now_ms`.
  std::optional<entry> pop_due(int64_t now_ms);

  size_t size() const {
    return heap_.size();
  }

  void clear();

private:
  std::priority_queue<entry, std::vector<entry>, std::greater<entry>> heap_;
};

} // namespace tlm
