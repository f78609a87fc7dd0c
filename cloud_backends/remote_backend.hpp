#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "cloud_backends/cloud_backend.hpp"
#include "cloud_backends/settings.hpp"

namespace tlm {

/// The settings every remote backend has, read the same way for all.
struct remote_limits {
  std::chrono::milliseconds timeout; ///< `timeout_ms`, default 10 s.
  size_t max_in_flight;              ///< `max_in_flight`, 1 to 256.

  /// `default_in_flight`: what the service bears without tuning.
  static remote_limits read(settings_reader& in, int64_t default_in_flight) {
    auto timeout = in.timeout();
    auto n = in.optional_int("max_in_flight", default_in_flight, 1, 256);
    return {timeout, static_cast<size_t>(n)};
  }
};

/// What every backend that talks to a service over the network shares: it
/// blocks, serves `max_in_flight` calls at once (so it must be thread-safe)
/// and has a deadline per call, all from its settings.
class remote_backend : public cloud_backend {
public:
  remote_backend(std::string name, remote_limits limits)
    : name_(std::move(name)),
      timeout_(limits.timeout),
      max_in_flight_(limits.max_in_flight) {
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
