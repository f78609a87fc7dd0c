#include "cloud_backends/cloud_backend.hpp"

#include "core/error.hpp"

namespace tlm {

caf::error cloud_backend::renew(const std::string&, int64_t) {
  return caf::none;
}

caf::expected<std::string> cloud_backend::lookup(const std::string&) {
  return make_error(ec::invalid_token, "this backend does not exchange tokens");
}

caf::expected<cloud_token> cloud_backend::exchange(const std::string&,
                                                   const std::string&) {
  return make_error(ec::invalid_token, "this backend does not exchange tokens");
}

void cloud_backend::adopt(const std::vector<cloud_token>&) {
  // Services that keep their own tokens need nothing from our records.
}

} // namespace tlm
