#pragma once

#include <cstddef>
#include <cstdint>

namespace tlm {

/// What one TCP client may hold of the server: time, connection slots and
/// memory. The defaults here are the only ones; `--help` prints them.
struct tcp_limits {
  /// A connection with no byte moving either way and no request in flight
  /// is closed after this long (0: never). Long-lived pipelining clients
  /// stay connected; a stalled write (a client that stopped reading) counts
  /// as idle too.
  int64_t idle_timeout_ms = 300'000;

  /// With API keys configured, a connection that has not authenticated
  /// after this long is closed.
  int64_t auth_timeout_ms = 5'000;

  /// Reply bytes a connection may hold that its client has not read yet;
  /// beyond it the connection stops reading requests. A batch is cut where
  /// its replies would exceed it (at least one request a batch).
  int64_t reply_bytes_per_connection = 8 * 1024 * 1024;

  /// Reply bytes all connections together may hold; a connection waits
  /// (reading nothing) until others' clients have read theirs.
  int64_t reply_bytes_total = 256 * 1024 * 1024;
};

/// Longest line a connection may send before it has authenticated (when
/// API keys are configured): an `auth` message needs far less, and nothing
/// longer is parsed for a client nobody knows.
constexpr size_t max_pre_auth_line_bytes = 4096;

} // namespace tlm
