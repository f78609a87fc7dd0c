#include "core/secrets.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace tlm {

namespace {

/// Fills `out` from the OS CSPRNG. A thread keeps a small buffer of
/// getrandom output so a token costs no system call of its own.
void fill_random(unsigned char* out, size_t n) {
  thread_local unsigned char pool[4096];
  thread_local size_t available = 0;
  while (n > 0) {
    if (available == 0) {
      size_t filled = 0;
      while (filled < sizeof(pool)) {
        auto got = getrandom(pool + filled, sizeof(pool) - filled, 0);
        if (got < 0) {
          if (errno == EINTR)
            continue;
          throw std::runtime_error("getrandom failed");
        }
        filled += static_cast<size_t>(got);
      }
      available = sizeof(pool);
    }
    auto take = std::min(n, available);
    auto* from = pool + sizeof(pool) - available;
    std::memcpy(out, from, take);
    std::memset(from, 0, take); // handed-out bytes do not linger
    available -= take;
    out += take;
    n -= take;
  }
}

} // namespace

// Base64url by hand: Poco's stream encoder needs an ostringstream per
// token, which cost more than the rest of a create.
std::string random_token(size_t bytes) {
  static constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<unsigned char> buf(bytes + 2, 0);
  fill_random(buf.data(), bytes);
  std::string out;
  out.reserve((bytes * 4 + 2) / 3);
  for (size_t i = 0; i < bytes; i += 3) {
    uint32_t group = (uint32_t{buf[i]} << 16) | (uint32_t{buf[i + 1]} << 8)
                     | buf[i + 2];
    size_t chars = std::min<size_t>(4, ((bytes - i) * 4 + 2) / 3);
    for (size_t c = 0; c < chars; ++c)
      out.push_back(alphabet[(group >> (18 - 6 * c)) & 0x3f]);
  }
  std::memset(buf.data(), 0, buf.size());
  return out;
}

std::string random_id(size_t bytes) {
  for (;;) {
    auto id = random_token(bytes);
    if (id.empty() || (id.front() != '-' && id.front() != '_'))
      return id;
  }
}

} // namespace tlm

#include <Poco/SHA2Engine.h>

namespace tlm {

std::string sha256(std::string_view text) {
  Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
  engine.update(text.data(), static_cast<unsigned>(text.size()));
  const auto& digest = engine.digest();
  return std::string(digest.begin(), digest.end());
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

} // namespace tlm
