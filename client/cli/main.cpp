// `tlm`: the command-line client of tlmd.

#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"

int main(int argc, char** argv) {
  using namespace tlm::cli;
  CLI::App app{"tlm: the command-line client of tlmd, the token lease "
               "manager"};
  app.require_subcommand(1);
  app_state st;
  app
    .add_option("--addr", st.flags.addr,
                "tlmd's address: tcp://host:port (default "
                "tcp://127.0.0.1:3667), http://host:port or host:port; "
                "env TLM_ADDR")
    ->group("Connection");
  app
    .add_option("--api-key-file", st.flags.api_key_file,
                "file with the API key (first line); env TLM_API_KEY_FILE")
    ->group("Connection");
  app
    .add_option("--config", st.flags.config,
                "config file (JSON: addr, api_key_file, timeout_ms); env "
                "TLM_CONFIG, default ~/.config/tlm/config.json")
    ->group("Connection");
  app
    .add_option("--timeout-ms", st.flags.timeout_ms,
                "how long a call may wait for its reply (default 10000)")
    ->check(CLI::PositiveNumber)
    ->group("Connection");
  app.add_flag("--json", st.json, "print JSON instead of tables");
  app.footer("Precedence: flags, then environment, then the config file.\n"
             + exit_codes_help());
  app.fallthrough();
  add_lease_commands(app, st);
  add_admin_commands(app, st);
  add_keep_command(app, st);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  return st.exit_code;
}
