#include "api/request_order.hpp"

namespace tlm {

namespace {

using kind = request_scope::kind;

struct scope_visitor {
  request_scope operator()(const create_cmd&) const {
    return {kind::fresh, {}};
  }
  request_scope operator()(const get_cmd& x) const {
    return {kind::one, "lease:" + x.lease_id};
  }
  request_scope operator()(const revoke_cmd& x) const {
    return {kind::one, "lease:" + x.lease_id};
  }
  request_scope operator()(const renew_cmd& x) const {
    return {kind::one, "lease:" + x.lease_id};
  }
  request_scope operator()(const job_cmd& x) const {
    return {kind::one, "job:" + x.job_id};
  }
  // Authentication touches no lease; the connection applies it in order.
  request_scope operator()(const auth_cmd&) const {
    return {kind::fresh, {}};
  }
  template <class T>
  request_scope operator()(const T&) const {
    return {kind::all, {}};
  }
};

} // namespace

request_scope scope_of(const command& cmd) {
  return std::visit(scope_visitor{}, cmd);
}

std::vector<size_t> request_order::admit(size_t index,
                                         const request_scope& scope) {
  std::vector<size_t> wait_for;
  if (barrier_)
    wait_for.push_back(*barrier_);
  switch (scope.what) {
    case kind::all:
      wait_for.insert(wait_for.end(), since_barrier_.begin(),
                      since_barrier_.end());
      barrier_ = index;
      since_barrier_.clear();
      newest_of_key_.clear();
      return wait_for;
    case kind::one: {
      auto [i, added] = newest_of_key_.try_emplace(scope.key, index);
      if (!added) {
        wait_for.push_back(i->second);
        i->second = index;
      }
      break;
    }
    case kind::fresh: break;
  }
  since_barrier_.push_back(index);
  return wait_for;
}

} // namespace tlm
