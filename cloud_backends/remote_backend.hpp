#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// What every backend that talks to a service over the network shares: it
/// blocks, serves `max_in_flight` calls at once (so it must be thread-safe)
/// and has a deadline per call, all from its settings.
class remote_backend : public cloud_backend {
public:
  remote_backend(std::string name, std::chrono::milliseconds timeout,
                 size_t max_in_flight)
    : name_(std::move(name)), timeout_(timeout), max_in_flight_(max_in_flight) {
    // nop
  }

  bool blocking() const override {
    return true;
  }

  size_t concurrency() const override {
    return max_in_flight_;
  }

  std::chrono::milliseconds timeout() const override {
    return timeout_;
  }

protected:
  std::string name_;

private:
  std::chrono::milliseconds timeout_;
  size_t max_in_flight_;
};

} // namespace tlm
