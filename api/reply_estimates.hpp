#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <variant>

#include "api/protocol.hpp"

namespace tlm {

/// How large a reply may be, by what the request asks for.
enum class reply_kind : uint8_t {
  small, ///< failures, health, auth, revoke, job
  lease, ///< get, renew, exchange: a stored lease
  page,  ///< list
  echo,  ///< create: the lease made from this very line
};

/// The size class of a request's reply.
reply_kind kind_of(const api_request& req);

/// Reply sizes to reserve before the replies exist: the largest seen so
/// far of each kind (shared by all connections, never shrinking), and at
/// least a floor. A create's reply repeats its request, so its line bounds
/// it. The first batch of large leases after a start can exceed its
/// reservation once.
class reply_estimates {
public:
  int64_t reserve(reply_kind kind, size_t line_bytes) const {
    if (kind == reply_kind::echo)
      return static_cast<int64_t>(line_bytes) + 1024;
    auto i = static_cast<size_t>(kind);
    return std::max(floors_[i], seen_[i].load(std::memory_order_relaxed));
  }

  void observe(reply_kind kind, size_t bytes) {
    auto& seen = seen_[static_cast<size_t>(kind)];
    auto n = static_cast<int64_t>(bytes);
    auto old = seen.load(std::memory_order_relaxed);
    while (n > old && !seen.compare_exchange_weak(old, n))
      ;
    // A create's reply is a lease that a get will read later.
    if (kind == reply_kind::echo)
      observe(reply_kind::lease, bytes);
  }

private:
  static constexpr std::array<int64_t, 4> floors_{1024, 16 * 1024, 64 * 1024,
                                                  0};
  std::array<std::atomic<int64_t>, 4> seen_{};
};

} // namespace tlm
