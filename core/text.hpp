#pragma once

// Small text helpers for messages we keep or show (never secrets).

#include <cstddef>
#include <string>
#include <string_view>

namespace tlm {

/// At most `max_bytes` of `text`, cut before a UTF-8 character that would
/// not fit whole: a cut never splits a character into invalid bytes.
/// (Bytes that are invalid in `text` already are left as they are.)
inline std::string cut_utf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes)
    return std::string{text};
  auto end = max_bytes;
  // Step back over continuation bytes (10xxxxxx) to the start of the
  // character that straddles the cut, and cut before it.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
    --end;
  return std::string{text.substr(0, end)};
}

/// How long a backend's reason may be where we keep it (`last_error`).
constexpr size_t max_error_bytes = 240;

} // namespace tlm
