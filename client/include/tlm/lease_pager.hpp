#pragma once

// Pages through a `list`, one lease at a time.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "tlm/lease.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api {

/// Yields every lease of a `list`, fetching the next page when the current
/// one is used up. The cursor makes the server return every lease that
/// lives throughout exactly once.
class lease_pager {
public:
  using fetch_page = std::function<result<lease_page>(const std::string&)>;

  explicit lease_pager(fetch_page fetch);

  /// The next lease, a failure, or nothing once every page was read. After
  /// a failure, calling again retries the same page.
  std::optional<result<lease>> next();

private:
  fetch_page fetch_;
  lease_page page_;
  size_t index_ = 0;
  bool started_ = false;
};

} // namespace tlm::inline client_api
