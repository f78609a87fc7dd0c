#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace tlm {

/// A lease id held inline (ids are 22 URL-safe characters), so the tables
/// of a million leases need no allocation per key.
class lease_key {
public:
  static constexpr size_t max_size = 23;

  /// The key of `id`, if it is a lease id: 1 to 23 URL-safe characters.
  static std::optional<lease_key> of(std::string_view id) {
    if (id.empty() || id.size() > max_size)
      return std::nullopt;
    for (char c : id)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        return std::nullopt;
    lease_key key;
    std::memcpy(key.bytes_.data(), id.data(), id.size());
    key.bytes_[max_size] = static_cast<char>(id.size());
    return key;
  }

  std::string_view view() const {
    return {bytes_.data(), static_cast<size_t>(bytes_[max_size])};
  }

  std::string str() const {
    return std::string{view()};
  }

  bool operator==(const lease_key& other) const {
    return bytes_ == other.bytes_;
  }

  /// Mixes all 24 bytes (ids are random, but stored records may not be).
  size_t hash() const noexcept {
    uint64_t words[3];
    std::memcpy(words, bytes_.data(), sizeof words);
    uint64_t h = words[0] * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (h >> 29) ^ words[1]) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 32) ^ words[2]) * 0x94D049BB133111EBULL;
    return static_cast<size_t>(h ^ (h >> 31));
  }

private:
  std::array<char, max_size + 1> bytes_{}; // characters, then the length
};

/// For `std::unordered_map<lease_key, ...>`; noexcept, so the table does
/// not store a hash per node.
struct lease_key_hash {
  size_t operator()(const lease_key& key) const noexcept {
    return key.hash();
  }
};

} // namespace tlm
