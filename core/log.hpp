#pragma once

#include <string>
#include <string_view>

namespace tlm {

/// One line on stderr: `tlmd: <level>: <text>`. Callers never pass secrets.
void log_line(std::string_view level, const std::string& text);

} // namespace tlm
