#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tlm {

/// `bytes` bytes from the OS CSPRNG (getrandom), base64url without padding.
/// Used for lease ids and token values alike.
std::string random_token(size_t bytes);

/// A random_token that begins with a letter or digit: ids are typed on
/// command lines, where a leading '-' reads as a flag (`tlm get -Ab…`).
/// Drawn again rather than patched, so the ids stay uniform.
std::string random_id(size_t bytes);

/// SHA-256 of `text`, as 32 raw bytes: lets us index and compare secrets
/// without keeping or comparing them as they are.
std::string sha256(std::string_view text);

/// Compares two strings in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b);

} // namespace tlm
