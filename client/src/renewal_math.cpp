#include "tlm/renewal_math.hpp"

#include <algorithm>
#include <cmath>

namespace tlm::inline client_api {

std::string check_timing(const renewal_timing& t) {
  if (!(t.stale_fraction > 0 && t.stale_fraction <= 1))
    return "stale fraction must be in (0, 1]";
  if (!(t.jitter_fraction >= 0 && t.jitter_fraction < t.stale_fraction))
    return "jitter fraction must be at least 0 and below the stale fraction";
  if (t.backoff_base.count() <= 0)
    return "backoff base must be positive";
  if (t.backoff_max < t.backoff_base)
    return "backoff max must be at least the backoff base";
  if (t.backoff_floor.count() < 0 || t.backoff_floor > t.backoff_base)
    return "backoff floor must be between 0 and the backoff base";
  return {};
}

wall_time refresh_time(const renewal_timing& t, wall_time start,
                       wall_time expires, double u) {
  if (expires <= start)
    return start;
  auto term = std::chrono::duration<double, std::milli>(expires - start);
  double fraction = t.stale_fraction - t.jitter_fraction * u;
  auto offset = std::chrono::duration_cast<wall_clock::duration>(
    term * std::max(0.0, fraction));
  return start + offset;
}

milliseconds backoff_delay(const renewal_timing& t, int attempt, double u) {
  // 2^(attempt-1), without overflowing for large attempts.
  double cap = static_cast<double>(t.backoff_max.count());
  double grown = static_cast<double>(t.backoff_base.count())
                 * std::pow(2.0, std::clamp(attempt - 1, 0, 62));
  double window = std::min(cap, grown);
  auto delay = milliseconds{static_cast<int64_t>(window * u)};
  return std::max(delay, t.backoff_floor);
}

} // namespace tlm::inline client_api
