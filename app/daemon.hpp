#pragma once

namespace tlm {

/// Runs tlmd until SIGTERM or SIGINT; returns the process exit code.
int run_daemon(int argc, char** argv);

} // namespace tlm
