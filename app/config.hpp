#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "api/http_guard.hpp"
#include "api/tcp_limits.hpp"
#include "api/token_server_api.hpp"

namespace tlm {

/// The folder of the default storage: the only folder tlmd ever creates.
inline constexpr const char* default_storage_dir = "./data";

/// Everything `tlmd` reads from its command line and config file, parsed
/// and validated once.
struct daemon_config {
  std::string bind = "127.0.0.1";
  int http_port = 3666;
  int tcp_port = 3667;
  std::string storage = std::string{"sqlite:"} + default_storage_dir
                        + "/tlm.db";
  /// PostgreSQL only: a file whose first line is the password (never the
  /// connection string or the command line).
  std::string storage_password_file;
  std::string default_backend = "local";
  int64_t default_ttl_ms = 3'600'000;
  int64_t min_ttl_ms = 1'000;
  int64_t max_ttl_ms = 96 * 3'600'000LL;
  std::string api_key_file;
  /// Backend name -> settings (`type` plus the backend's own keys).
  nlohmann::json backends = {{"local", {{"type", "local"}}}};
  int64_t retry_base_ms = 1'000;
  int64_t retry_max_ms = 300'000;
  int64_t max_revoke_attempts = 10;
  /// Shared storage (several instances): the poll period and how long an
  /// instance may be silent before the others take over its work.
  int64_t shared_poll_ms = 1'000;
  int64_t instance_timeout_ms = 3'000;
  int tcp_max_connections = 1024;
  /// More workers than a flood's slow connections keeps the others' latency
  /// (bench/http_slowloris.py: p99 16 ms at 256, 140 ms at 64, shedding).
  int http_threads = 256;
  // -- HTTP limits (issue 9): defaults in `http_limits` -----------------------
  http_limits http;
  // -- TCP hardening (issue 9): timeouts and reply budgets --------------------
  tcp_limits tcp;
  // -- compatible APIs (issue 15) ---------------------------------------------
  token_server_settings token_server;
};

/// The outcome of reading the command line: a config to run, or a text to
/// print and an exit code (for `--help` and for errors).
struct command_line {
  daemon_config config;
  bool exit_now = false;
  int exit_code = 0;
  std::string output;
};

/// Reads flags (both `--name=value` and `--name value`) and, with
/// `--config FILE`, a JSON file whose values the flags override.
command_line parse_command_line(int argc, char** argv);

/// Checks a config for consistency (ttl bounds, ports, the default
/// backend); the message names the key to fix.
caf::error validate(const daemon_config& cfg);

} // namespace tlm
