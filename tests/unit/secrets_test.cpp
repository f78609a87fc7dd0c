// Tokens and key comparison.

#include <set>

#include <doctest/doctest.h>

#include "core/secrets.hpp"

using namespace tlm;

TEST_CASE("random tokens are unpadded base64url of the asked length") {
  CHECK(random_token(16).size() == 22);
  CHECK(random_token(32).size() == 43);
  CHECK(random_token(3).size() == 4);
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) {
    auto t = random_token(32);
    CHECK(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                              "tuvwxyz0123456789-_")
          == std::string::npos);
    seen.insert(std::move(t));
  }
  CHECK(seen.size() == 10'000);
  // Every one of the 64 characters shows up: the encoding uses all bits.
  std::set<char> chars;
  for (auto& t : seen)
    chars.insert(t.begin(), t.end());
  CHECK(chars.size() == 64);
}

TEST_CASE("ids never begin with a character a shell tool reads as a flag") {
  // A random_token begins with '-' or '_' once in 32 draws; 2,000 draws
  // would show one with near certainty if random_id did not draw again.
  std::set<char> first;
  for (int i = 0; i < 2'000; ++i) {
    auto id = random_id(16);
    REQUIRE(id.size() == 22);
    first.insert(id.front());
  }
  CHECK(first.count('-') == 0);
  CHECK(first.count('_') == 0);
  CHECK(first.size() == 62); // every letter and digit still begins some id
}

TEST_CASE("constant_time_equal compares whole strings") {
  CHECK(constant_time_equal("abc", "abc"));
  CHECK(!constant_time_equal("abc", "abd"));
  CHECK(!constant_time_equal("abc", "ab"));
  CHECK(constant_time_equal("", ""));
  CHECK(sha256("abc").size() == 32);
  CHECK(sha256("abc") != sha256("abd"));
}
