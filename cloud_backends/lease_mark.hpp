#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/lease.hpp"

namespace tlm {

/// How a backend marks each token it makes with its lease id, in a field
/// the service keeps (an InfluxDB description, a user name): a fixed
/// prefix, then the id. After a crash between "token made" and "lease
/// stored", `get_all` finds the token again by its mark.
class lease_mark {
public:
  constexpr explicit lease_mark(std::string_view prefix) : prefix_(prefix) {
    // nop
  }

  /// The mark for a token of lease `lease_id`.
  std::string of(const std::string& lease_id) const;

  /// The lease id in `text`, or nothing when tlmd did not make the token.
  std::optional<std::string> lease_id_in(std::string_view text) const;

  /// The token found at the service under `text`, with its lease id, or
  /// nothing when the token is not ours.
  std::optional<cloud_token> token(std::string backend_id, std::string value,
                                   std::string_view text) const;

private:
  std::string_view prefix_;
};

/// InfluxDB 2.x: the authorization's description is `tlm:<lease id>`.
inline constexpr lease_mark description_mark{"tlm:"};

/// InfluxDB 1.x and Redis: the user is named `tlm_<lease id>`.
inline constexpr lease_mark user_name_mark{"tlm_"};

} // namespace tlm
