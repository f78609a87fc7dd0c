#include <doctest/doctest.h>

#include "api/request_order.hpp"

using namespace tlm;

namespace {

using kind = request_scope::kind;

request_scope fresh() {
  return {kind::fresh, {}};
}
request_scope one(const char* key) {
  return {kind::one, key};
}
request_scope all() {
  return {kind::all, {}};
}

using waits = std::vector<size_t>;

} // namespace

TEST_CASE("creates run at once, a list waits for every create before it") {
  request_order order;
  CHECK(order.admit(0, fresh()).empty());
  CHECK(order.admit(1, fresh()).empty());
  CHECK(order.admit(2, all()) == waits{0, 1});
  // After the barrier, everything waits for it (and so for all before).
  CHECK(order.admit(3, fresh()) == waits{2});
  CHECK(order.admit(4, one("a")) == waits{2});
  CHECK(order.admit(5, all()) == waits{2, 3, 4});
}

TEST_CASE("actions on one lease keep their order, on others they do not") {
  request_order order;
  CHECK(order.admit(0, one("a")).empty());
  CHECK(order.admit(1, one("b")).empty());
  CHECK(order.admit(2, fresh()).empty());
  CHECK(order.admit(3, one("a")) == waits{0});
  CHECK(order.admit(4, one("a")) == waits{3});
  CHECK(order.admit(5, one("b")) == waits{1});
}

TEST_CASE("the scope of each action") {
  CHECK(scope_of(create_cmd{}).what == kind::fresh);
  CHECK(scope_of(get_cmd{"x"}).what == kind::one);
  CHECK(scope_of(get_cmd{"x"}).key == scope_of(renew_cmd{"x", 1}).key);
  CHECK(scope_of(get_cmd{"x"}).key == scope_of(revoke_cmd{"x", false}).key);
  CHECK(scope_of(job_cmd{"x"}).key != scope_of(get_cmd{"x"}).key);
  CHECK(scope_of(list_cmd{}).what == kind::all);
  CHECK(scope_of(health_cmd{}).what == kind::all);
  CHECK(scope_of(revoke_prefix_cmd{}).what == kind::all);
  CHECK(scope_of(exchange_cmd{}).what == kind::all);
}
