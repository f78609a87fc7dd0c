#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <nlohmann/json.hpp>

namespace tlm {

/// Reads one backend's JSON settings with type checks. Each read names its
/// key; `finish` then rejects keys nobody read. Every error names the full
/// key (`backends.<name>.<key>`), so a bad config says what to fix.
class settings_reader {
public:
  settings_reader(std::string backend_name, const nlohmann::json& settings);

  std::string required_string(const std::string& key);
  std::string optional_string(const std::string& key, std::string fallback);
  int64_t optional_int(const std::string& key, int64_t fallback, int64_t min,
                       int64_t max);
  std::chrono::milliseconds timeout(const std::string& key = "timeout_ms",
                                    int64_t fallback_ms = 10'000);
  /// The first line of a file whose path is the key's value (secrets are
  /// kept in files, never in the config itself).
  std::string secret_file(const std::string& key);
  /// A JSON value kept as it is (validated by the caller).
  nlohmann::json optional_json(const std::string& key,
                               nlohmann::json fallback);

  /// Fails on the first problem seen, or on a key nobody read.
  caf::error finish();

  /// Records a problem with a key found by the caller's own checks.
  void fail(const std::string& key, const std::string& problem);

  std::string full_key(const std::string& key) const {
    return "backends." + name_ + "." + key;
  }

private:
  const nlohmann::json* find(const std::string& key);

  std::string name_;
  const nlohmann::json& settings_;
  std::set<std::string> read_{"type"};
  caf::error error_;
};

} // namespace tlm
