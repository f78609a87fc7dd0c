#include "cloud_backends/lease_mark.hpp"

namespace tlm {

std::string lease_mark::of(const std::string& lease_id) const {
  return std::string{prefix_} + lease_id;
}

std::optional<std::string>
lease_mark::lease_id_in(std::string_view text) const {
  if (text.substr(0, prefix_.size()) != prefix_)
    return std::nullopt;
  return std::string{text.substr(prefix_.size())};
}

std::optional<cloud_token> lease_mark::token(std::string backend_id,
                                             std::string value,
                                             std::string_view text) const {
  auto lease_id = lease_id_in(text);
  if (!lease_id)
    return std::nullopt;
  cloud_token result;
  result.backend_id = std::move(backend_id);
  result.value = std::move(value);
  result.lease_id = *lease_id;
  return result;
}

} // namespace tlm
