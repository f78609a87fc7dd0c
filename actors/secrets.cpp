#include "actors/secrets.hpp"

#include <sys/random.h>

#include <cerrno>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <Poco/Base64Encoder.h>

namespace tlm {

std::string random_token(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  size_t filled = 0;
  while (filled < bytes) {
    auto n = getrandom(buf.data() + filled, bytes - filled, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw std::runtime_error("getrandom failed");
    }
    filled += static_cast<size_t>(n);
  }
  std::ostringstream out;
  Poco::Base64Encoder enc(out, Poco::BASE64_URL_ENCODING
                                 | Poco::BASE64_NO_PADDING);
  enc.rdbuf()->setLineLength(0);
  enc.write(reinterpret_cast<const char*>(buf.data()),
            static_cast<std::streamsize>(bytes));
  enc.close();
  return out.str();
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
