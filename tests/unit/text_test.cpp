#include <doctest/doctest.h>

#include "core/text.hpp"

using tlm::cut_utf8;

TEST_CASE("cut_utf8 keeps short text whole") {
  CHECK(cut_utf8("abc", 3) == "abc");
  CHECK(cut_utf8("", 0) == "");
  CHECK(cut_utf8("abcd", 2) == "ab");
}

TEST_CASE("cut_utf8 never splits a character") {
  // "é" is two bytes (C3 A9), "€" three (E2 82 AC), "😀" four.
  CHECK(cut_utf8("a\xC3\xA9", 2) == "a");
  CHECK(cut_utf8("a\xC3\xA9", 3) == "a\xC3\xA9");
  CHECK(cut_utf8("\xE2\x82\xAC\xE2\x82\xAC", 4) == "\xE2\x82\xAC");
  CHECK(cut_utf8("\xE2\x82\xAC\xE2\x82\xAC", 5) == "\xE2\x82\xAC");
  CHECK(cut_utf8("x\xF0\x9F\x98\x80", 4) == "x");
  CHECK(cut_utf8("\xC3\xA9", 1) == "");
}

TEST_CASE("cut_utf8 at 240 bytes of two-byte characters stays valid") {
  std::string text;
  text += 'x'; // odd offset: a byte cut at 240 would split an "é"
  for (int i = 0; i < 200; ++i)
    text += "\xC3\xA9";
  auto cut = cut_utf8(text, tlm::max_error_bytes);
  CHECK(cut.size() == 239);
  CHECK((static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80);
  CHECK(static_cast<unsigned char>(cut[cut.size() - 2]) == 0xC3);
}
