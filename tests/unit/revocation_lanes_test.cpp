#include <doctest/doctest.h>

#include "actors/revocation_lanes.hpp"

using namespace tlm;

namespace {

lease_key key(const char* id) {
  return *lease_key::of(id);
}

} // namespace

TEST_CASE("a lane admits up to its limit, then queues in order") {
  revocation_lanes lanes{4};
  lanes.set_limit("remote", 2);
  CHECK(lanes.has_room("remote"));
  lanes.started("remote");
  lanes.started("remote");
  CHECK(!lanes.has_room("remote"));
  lanes.wait("remote", key("a"));
  lanes.wait("remote", key("b"));
  CHECK(lanes.waiting("remote") == 2);
  CHECK(!lanes.next("remote")); // no free slot yet
  lanes.finished("remote");
  auto first = lanes.next("remote");
  REQUIRE(first);
  CHECK(first->str() == "a");
  lanes.started("remote");
  CHECK(!lanes.next("remote"));
  CHECK(lanes.in_flight() == 2);
}

TEST_CASE("one backend's full lane never blocks another's") {
  revocation_lanes lanes{3};
  lanes.set_limit("slow", 1);
  lanes.started("slow");
  CHECK(!lanes.has_room("slow"));
  // An unset lane (in-process or unconfigured backend) has the default.
  for (int i = 0; i < 3; ++i) {
    CHECK(lanes.has_room("local"));
    lanes.started("local");
  }
  CHECK(!lanes.has_room("local"));
  CHECK(lanes.in_flight() == 4);
  lanes.finished("slow");
  CHECK(lanes.has_room("slow"));
  CHECK(!lanes.has_room("local"));
  CHECK(!lanes.next("slow")); // nothing waits
}
