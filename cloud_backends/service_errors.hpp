#pragma once

#include <string>
#include <string_view>

#include <caf/error.hpp>

namespace tlm {

/// The one table from a remote service's failures to our error codes, and
/// the sentences that go with them, for every remote backend alike. Each
/// message names the service and, for a rejected admin credential, the
/// settings that fix it. The service's own text is cut by `clip`.
class service_errors {
public:
  /// `service`: how messages name it ("InfluxDB 'metrics'");
  /// `address`: where it is (a URL, `host:port`); `credential`: what we
  /// log in with ("admin token"); `fix`: the settings to check
  /// ("backends.metrics.token_file and its permissions").
  service_errors(std::string service, std::string address,
                 std::string credential, std::string fix);

  const std::string& service() const {
    return service_;
  }

  /// A refused or reset connection: `backend_unavailable`.
  caf::error unreachable(const std::string& detail) const;

  /// No answer within `timeout_ms`: `backend_unavailable`.
  caf::error timed_out() const;

  /// The service's TLS certificate or setup failed verification:
  /// `backend_error`, as a retry cannot help.
  caf::error untrusted(const std::string& detail) const;

  /// The service refused our admin credential: `backend_error`, naming
  /// the settings to fix. `detail` may be empty.
  caf::error rejected_credential(std::string_view detail) const;

  /// The service refused a command of ours: `backend_error`.
  caf::error refused(std::string_view detail) const;

  /// An answer we cannot use: `backend_error`.
  caf::error unexpected(const std::string& what) const;

  /// Maps an HTTP-like status to our codes: 401/403 our credential; 429
  /// throttling (`overloaded`); 5xx `backend_unavailable`; with
  /// `client_request`, 400/422 are the client's options
  /// (`invalid_request`); anything else `backend_error`. `text` is the
  /// service's reason, may be empty.
  caf::error of_status(int status, std::string_view text,
                       bool client_request) const;

private:
  std::string service_;
  std::string address_;
  std::string credential_;
  std::string fix_;
};

/// A service's own message cut to at most 240 bytes, never inside a UTF-8
/// character, so replies carrying it stay valid JSON.
std::string clip(std::string_view text);

} // namespace tlm
