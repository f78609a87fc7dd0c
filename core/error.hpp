#pragma once

// One error enum for the whole service. Its values are the protocol's failure
// codes, so an actor's `caf::error` maps one-to-one to a protocol failure.

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/make_message.hpp>
#include <caf/result.hpp>

namespace tlm {

enum class ec : uint8_t {
  none = 0,
  invalid_request,
  unauthorized,
  not_found,
  invalid_token,
  not_renewable,
  unknown_backend,
  backend_unavailable,
  backend_error,
  storage_error,
  too_large,
  overloaded,
  internal,
  /// Not a failure of the request: the lease is dead here, but its backend
  /// has not confirmed the revocation yet, which is retried until it does.
  revocation_pending,
};

/// The protocol's name of a code, e.g. "not_found".
std::string_view to_string(ec code);

/// Builds an error carrying a sentence a user can act on. The sentence must
/// never contain a token value.
caf::error make_error(ec code, std::string message);

/// The protocol code of any error; errors from outside our category (CAF's
/// own, e.g. a request timeout) become `internal`.
ec code_of(const caf::error& err);

/// The human sentence stored in an error made by `make_error`.
std::string message_of(const caf::error& err);

/// Turns a backend's `expected` into an actor's reply.
template <class T>
caf::result<T> to_result(caf::expected<T>&& x) {
  if (!x)
    return std::move(x.error());
  return std::move(*x);
}

} // namespace tlm

CAF_ERROR_CODE_ENUM(tlm::ec, "tlm")
