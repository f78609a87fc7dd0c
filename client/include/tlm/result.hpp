#pragma once

// The outcome of every client call: a value, or a failure code with a
// sentence a user can act on.

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tlm::inline client_api {

/// Failure codes: the protocol's own, then the ones the client adds.
enum class errc {
  // -- from the server (the protocol's failure codes) ------------------------
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
  // -- from the client -------------------------------------------------------
  /// Could not connect, or the connection broke before the reply came.
  connection_failed,
  /// No reply within the request timeout.
  timeout,
  /// The server's reply was not the protocol's JSON.
  bad_reply,
  /// Asked for a feature the server or this client does not have (TLS).
  unsupported,
  /// The lease cache file could not be read, written or locked.
  cache_error,
};

/// The protocol's (or the client's) name of a code, e.g. "not_found".
std::string_view to_string(errc code);

/// The code with this protocol name; `bad_reply` for an unknown name.
errc errc_from_string(std::string_view name);

/// True for failures that may heal by themselves (retrying makes sense).
bool is_transient(errc code);

struct failure {
  errc code;
  std::string message;
};

/// Either a `T` or a `failure`.
template <class T>
class result {
public:
  result(T value) : state_(std::move(value)) {
  }
  result(failure err) : state_(std::move(err)) {
  }

  bool ok() const {
    return state_.index() == 0;
  }
  explicit operator bool() const {
    return ok();
  }
  /// The value; only when `ok()`.
  T& value() {
    return std::get<0>(state_);
  }
  const T& value() const {
    return std::get<0>(state_);
  }
  T* operator->() {
    return &value();
  }
  const T* operator->() const {
    return &value();
  }
  /// The failure; only when `!ok()`.
  const failure& error() const {
    return std::get<1>(state_);
  }

private:
  std::variant<T, failure> state_;
};

/// A call that succeeded with nothing to return.
struct done {};

} // namespace tlm::inline client_api
