// The compact forms the manager and the local backend keep a million of:
// they must give back exactly what went in.

#include <doctest/doctest.h>

#include "core/lease_key.hpp"
#include "core/packed_lease.hpp"

using namespace tlm;

namespace {

lease sample() {
  lease x;
  x.id = "AbCdEfGhIjKlMnOpQrStUv";
  x.backend = "influx";
  x.backend_id = "0a1b2c3d4e5f6789";
  x.value = "secret.value";
  x.ttl_ms = 60'000;
  x.issued_ms = 1'800'000'000'000;
  x.expires_ms = 1'800'000'060'000;
  x.renewable = true;
  x.tags = {"blue", "", std::string(300, 't')}; // a length past one varint byte
  x.meta = R"({"team":"db"})";
  x.description = "nightly export";
  x.state = state_revoking;
  x.attempts = 3;
  x.last_error = "backend said no";
  return x;
}

void check_same(const lease& a, const lease& b) {
  CHECK(a.id == b.id);
  CHECK(a.backend == b.backend);
  CHECK(a.backend_id == b.backend_id);
  CHECK(a.value == b.value);
  CHECK(a.ttl_ms == b.ttl_ms);
  CHECK(a.issued_ms == b.issued_ms);
  CHECK(a.expires_ms == b.expires_ms);
  CHECK(a.renewable == b.renewable);
  CHECK(a.tags == b.tags);
  CHECK(a.meta == b.meta);
  CHECK(a.description == b.description);
  CHECK(a.state == b.state);
  CHECK(a.attempts == b.attempts);
  CHECK(a.last_error == b.last_error);
}

} // namespace

TEST_CASE("a packed lease unpacks to the same lease") {
  auto x = sample();
  packed_lease p{x};
  check_same(p.unpack(x.id), x);
  CHECK(p.backend() == "influx");
  CHECK(p.backend_id(x.id) == "0a1b2c3d4e5f6789");
  CHECK(p.value() == "secret.value");
  CHECK(p.has_tag("blue"));
  CHECK(p.has_tag(std::string(300, 't')));
  CHECK(!p.has_tag("red"));
  CHECK(p.state == record_state::revoking);
}

TEST_CASE("a backend id equal to the lease id is kept once, and survives "
          "a new last error") {
  auto x = sample();
  x.backend_id = x.id;
  x.meta = "{}";
  x.tags.clear();
  packed_lease p{x};
  CHECK(p.backend_id(x.id) == x.id);
  p.set_last_error("timed out");
  x.last_error = "timed out";
  check_same(p.unpack(x.id), x);
}

TEST_CASE("every record state has one name") {
  for (auto name :
       {state_active, state_pending, state_revoking, state_irrevocable}) {
    record_state x;
    REQUIRE(parse_record_state(name, x));
    CHECK(std::string{to_string(x)} == name);
  }
  record_state x;
  CHECK(!parse_record_state("exploded", x));
}

TEST_CASE("lease keys take lease ids and nothing else") {
  auto key = lease_key::of("AbCdEfGhIjKlMnOpQrStUv");
  REQUIRE(key);
  CHECK(key->str() == "AbCdEfGhIjKlMnOpQrStUv");
  CHECK(*key == *lease_key::of("AbCdEfGhIjKlMnOpQrStUv"));
  CHECK(!(*key == *lease_key::of("AbCdEfGhIjKlMnOpQrStUw")));
  CHECK(key->hash() != lease_key::of("AbCdEfGhIjKlMnOpQrStUw")->hash());
  CHECK(lease_key::of("a-_9")->str() == "a-_9");
  CHECK(!lease_key::of(""));
  CHECK(!lease_key::of("has space"));
  CHECK(!lease_key::of("dot.ted"));
  CHECK(!lease_key::of(std::string(24, 'a')));
  CHECK(lease_key::of(std::string(23, 'a')));
}
