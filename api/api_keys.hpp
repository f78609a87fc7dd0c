#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace tlm {

/// The API keys clients must present. Only SHA-256 digests are kept, and a
/// check compares against every key in constant time.
class api_keys {
public:
  /// Reads one key a line; blank lines and `#` comments are skipped.
  static caf::expected<api_keys> load(const std::string& path);

  /// Builds from keys in memory (tests).
  static api_keys of(const std::vector<std::string>& keys);

  /// True when no key is configured: everything is allowed.
  bool empty() const {
    return digests_.empty();
  }

  /// True when `key` is one of the keys (or no keys are configured).
  bool allows(std::string_view key) const;

  /// Reads `Bearer <key>` from an Authorization header value.
  bool allows_header(std::string_view authorization) const;

private:
  std::vector<std::string> digests_;
};

} // namespace tlm
