// The client's failure codes are the protocol's: the client keeps its own
// enum (it must not need CAF, which core/error.hpp brings), so this test
// pins the names to the server's enum.

#include <doctest/doctest.h>

#include "core/error.hpp"
#include "tlm/result.hpp"

TEST_SUITE_BEGIN("protocol_codes");

TEST_CASE("every failure code of the server has the same name here") {
  for (auto i = static_cast<int>(tlm::ec::invalid_request);
       i < static_cast<int>(tlm::ec::revocation_pending); ++i) {
    auto name = tlm::to_string(static_cast<tlm::ec>(i));
    auto code = tlm::errc_from_string(name);
    CAPTURE(name);
    CHECK(code != tlm::errc::bad_reply);
    CHECK(tlm::to_string(code) == name);
  }
}

TEST_CASE("the client's own codes are not protocol names") {
  for (auto code :
       {tlm::errc::connection_failed, tlm::errc::timeout, tlm::errc::bad_reply,
        tlm::errc::unsupported, tlm::errc::cache_error})
    for (auto i = static_cast<int>(tlm::ec::invalid_request);
         i <= static_cast<int>(tlm::ec::revocation_pending); ++i)
      CHECK(tlm::to_string(code) != tlm::to_string(static_cast<tlm::ec>(i)));
}

TEST_SUITE_END();
