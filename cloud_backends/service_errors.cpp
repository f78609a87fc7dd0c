#include "cloud_backends/service_errors.hpp"

#include "core/error.hpp"
#include "core/text.hpp"

namespace tlm {

namespace {

std::string in_parens(std::string_view text) {
  return text.empty() ? std::string{} : " (" + std::string{text} + ")";
}

} // namespace

std::string clip(std::string_view text) {
  return cut_utf8(text, max_error_bytes);
}

service_errors::service_errors(std::string service, std::string address,
                               std::string credential, std::string fix)
  : service_(std::move(service)),
    address_(std::move(address)),
    credential_(std::move(credential)),
    fix_(std::move(fix)) {
  // nop
}

caf::error service_errors::unreachable(const std::string& detail) const {
  return make_error(ec::backend_unavailable, service_ + " at " + address_
                                               + " is unreachable: " + detail);
}

caf::error service_errors::timed_out() const {
  return make_error(ec::backend_unavailable,
                    service_ + " at " + address_ + " did not answer in time");
}

caf::error service_errors::untrusted(const std::string& detail) const {
  return make_error(ec::backend_error,
                    service_ + " at " + address_
                      + " failed TLS verification: " + detail);
}

caf::error service_errors::rejected_credential(std::string_view detail) const {
  return make_error(ec::backend_error, service_ + " rejected the " + credential_
                                         + in_parens(clip(detail)) + ": check "
                                         + fix_);
}

caf::error service_errors::refused(std::string_view detail) const {
  return make_error(ec::backend_error, service_ + " refused: " + clip(detail));
}

caf::error service_errors::unexpected(const std::string& what) const {
  return make_error(ec::backend_error, service_ + " answered " + what);
}

caf::error service_errors::of_status(int status, std::string_view text,
                                     bool client_request) const {
  auto reason = "HTTP " + std::to_string(status)
                + (text.empty() ? "" : ": " + clip(text));
  if (status == 401 || status == 403)
    return rejected_credential(reason);
  if (client_request && (status == 400 || status == 422))
    return make_error(ec::invalid_request,
                      service_ + " refused the request: "
                        + (text.empty() ? reason : clip(text)));
  if (status == 429) // throttled: back off, it is no failure of ours
    return make_error(ec::overloaded,
                      service_ + " is throttling requests (" + reason + ")");
  if (status >= 500)
    return make_error(ec::backend_unavailable,
                      service_ + " is unavailable (" + reason + ")");
  return unexpected(reason);
}

} // namespace tlm
