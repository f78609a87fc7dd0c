#pragma once

// The one rule for what `get` and `list` show, in the terms of stored
// records: live (active, not expired) or given up (irrevocable). The
// index applies the same rule to its phases (`lease_index::visible`).

#include <cstdint>
#include <limits>

#include "core/lease.hpp"

namespace tlm {

/// The storage filter for a `list` at `now_ms`. Revocations under way are
/// the stored `revoking` ones and the active ones past their expiry, not
/// yet rewritten. Pending intents are never shown.
inline lease_filter filter_of(const list_query& q, int64_t now_ms) {
  constexpr auto min = std::numeric_limits<int64_t>::min();
  constexpr auto max = std::numeric_limits<int64_t>::max();
  lease_filter f{q.backend, q.tag, {}, q.after, q.limit};
  state_window live{state_active, now_ms + 1, max};
  state_window given_up{state_irrevocable, min, max};
  switch (q.state) {
    case list_state::visible: f.windows = {live, given_up}; break;
    case list_state::active: f.windows = {live}; break;
    case list_state::revoking:
      f.windows = {{state_revoking, min, max}, {state_active, min, now_ms}};
      break;
    case list_state::irrevocable: f.windows = {given_up}; break;
  }
  return f;
}

} // namespace tlm
