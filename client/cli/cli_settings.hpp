#pragma once

// Where `tlm` finds the server and its credentials: flags, then the
// environment (TLM_ADDR, TLM_API_KEY_FILE), then a config file.

#include <functional>
#include <optional>
#include <string>

#include "tlm/connection_options.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api::cli {

/// The global flags as given; empty means not given.
struct global_flags {
  std::string addr;
  std::string api_key_file;
  std::string config;
  int64_t timeout_ms = 0;
};

/// Reads an environment variable (injected in tests).
using env_lookup = std::function<std::optional<std::string>(const char*)>;

env_lookup process_env();

/// The default address when nothing names one.
inline constexpr const char* default_address = "tcp://127.0.0.1:3667";

/// The config file to read: `--config`, else TLM_CONFIG, else
/// `$XDG_CONFIG_HOME/tlm/config.json` or `~/.config/tlm/config.json` when
/// it exists. Empty: none.
std::string config_path(const global_flags& flags, const env_lookup& env);

/// The connection options from flags, environment and config file, in
/// that order of precedence. Failures name the flag, variable or key.
result<connection_options> resolve_connection(const global_flags& flags,
                                              const env_lookup& env);

} // namespace tlm::inline client_api::cli
