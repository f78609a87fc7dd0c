#include "api/reply_estimates.hpp"

namespace tlm {

namespace {

struct reply_kind_of {
  reply_kind operator()(const create_cmd&) const {
    return reply_kind::echo;
  }
  reply_kind operator()(const get_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const renew_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const exchange_cmd&) const {
    return reply_kind::lease;
  }
  reply_kind operator()(const list_cmd&) const {
    return reply_kind::page;
  }
  template <class Command>
  reply_kind operator()(const Command&) const {
    return reply_kind::small;
  }
};

} // namespace

reply_kind kind_of(const api_request& req) {
  return req.error ? reply_kind::small : std::visit(reply_kind_of{}, req.cmd);
}

} // namespace tlm
