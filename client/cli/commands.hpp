#pragma once

// The `tlm` subcommands, registered on a CLI11 app.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/cli_settings.hpp"
#include "tlm/client.hpp"
#include "tlm/lease.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api::cli {

/// What every subcommand shares: the global flags and the exit code the
/// subcommand that ran sets.
struct app_state {
  global_flags flags;
  bool json = false;
  int exit_code = 0;
};

/// The create flags, shared by `create` and `keep`.
struct create_flags {
  std::string backend;
  int64_t ttl_ms = 0;
  std::string role;
  bool renewable = false;
  std::vector<std::string> tags;
  std::vector<std::string> options;
  std::string options_json;
  std::string meta;
  std::string description;

  void add_to(CLI::App& cmd);
  /// The create request; failures name the flag.
  result<create_request> build() const;
};

/// Prints `tlm: <code>: <message>` and returns the exit code of its class.
int report(const failure& f);

/// The client for the resolved connection, or the exit code of a usage
/// error (already reported).
std::unique_ptr<client> connect(const app_state& st, int& exit_code);

void add_lease_commands(CLI::App& app, app_state& st);
void add_admin_commands(CLI::App& app, app_state& st);
void add_keep_command(CLI::App& app, app_state& st);

} // namespace tlm::inline client_api::cli
