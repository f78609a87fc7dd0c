#pragma once

// Runs tlmd's flag parser on an argument list, as `main` would.

#include <string>
#include <vector>

#include "app/config.hpp"

namespace tlm::test {

inline command_line parse(std::vector<std::string> args) {
  args.insert(args.begin(), "tlmd");
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

} // namespace tlm::test
