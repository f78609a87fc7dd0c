#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/lease.hpp"

namespace tlm {

/// The `state` of a stored lease record, as one byte.
enum class record_state : uint8_t { active, pending, revoking, irrevocable };

/// The state named `text`, if it is one.
bool parse_record_state(std::string_view text, record_state& out);

const char* to_string(record_state x);

/// A lease without its id in as little memory as we can: the numbers
/// inline, every string behind one allocation, lengths as varints. The
/// manager keeps a million of these; a `lease` would take four times the
/// space in empty strings and separate allocations alone.
class packed_lease {
public:
  int64_t ttl_ms = 0;
  int64_t issued_ms = 0;
  int64_t expires_ms = 0;
  int64_t last_access_ms = 0;
  int64_t row_id = 0;
  uint32_t attempts = 0;
  record_state state = record_state::active;
  bool renewable = false;

  packed_lease() = default;

  /// Packs everything but the id; an unknown state reads as active (the
  /// manager quarantines such records before it gets here).
  explicit packed_lease(const lease& x);

  packed_lease(packed_lease&&) noexcept = default;
  packed_lease& operator=(packed_lease&&) noexcept = default;

  std::string_view backend() const {
    return field(0);
  }
  /// The backend's id for the token; `id` is this lease's id.
  std::string_view backend_id(std::string_view id) const {
    return backend_id_is_id_ ? id : field(1);
  }
  std::string_view value() const {
    return field(2);
  }
  std::string_view last_error() const {
    return field(5);
  }
  bool has_tag(std::string_view tag) const;

  /// The whole lease again, with its id.
  lease unpack(std::string id) const;

  void set_last_error(std::string_view text);

private:
  /// The backend id equals the lease id (local tokens), so it is not
  /// stored a second time.
  bool backend_id_is_id_ = false;

  /// Field i of: backend, backend_id, value, meta, description, last_error,
  /// scope, then the tags.
  std::string_view field(size_t i) const;

  std::unique_ptr<char[]> text_;
};

} // namespace tlm
