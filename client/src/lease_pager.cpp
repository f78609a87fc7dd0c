#include "tlm/lease_pager.hpp"

namespace tlm::inline client_api {

lease_pager::lease_pager(fetch_page fetch) : fetch_(std::move(fetch)) {
}

std::optional<result<lease>> lease_pager::next() {
  while (index_ >= page_.leases.size()) {
    if (started_ && page_.next_cursor.empty())
      return std::nullopt;
    auto page = fetch_(started_ ? page_.next_cursor : std::string{});
    if (!page)
      return result<lease>{page.error()};
    started_ = true;
    page_ = std::move(page.value());
    index_ = 0;
  }
  return std::optional<result<lease>>{std::in_place, page_.leases[index_++]};
}

} // namespace tlm::inline client_api
