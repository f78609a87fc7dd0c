#include "core/log.hpp"

#include <iostream>
#include <mutex>

namespace tlm {

void log_line(std::string_view level, const std::string& text) {
  static std::mutex mtx; // whole lines, also from several threads
  std::lock_guard<std::mutex> guard{mtx};
  std::cerr << "tlmd: " << level << ": " << text << std::endl;
}

} // namespace tlm
