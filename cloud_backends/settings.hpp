#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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
  /// A required http:// or https:// URL with a host: checked here once,
  /// so `http_client` may trust it.
  std::string http_url(const std::string& key);
  std::chrono::milliseconds timeout(const std::string& key = "timeout_ms",
                                    int64_t fallback_ms = 10'000);
  /// The first line of a file whose path is the key's value (secrets are
  /// kept in files, never in the config itself).
  std::string secret_file(const std::string& key);
  /// A JSON value kept as it is (validated by the caller).
  nlohmann::json optional_json(const std::string& key, nlohmann::json fallback);
  bool optional_bool(const std::string& key, bool fallback);
  /// An array of non-empty strings (each checked further by the caller).
  std::vector<std::string> optional_strings(const std::string& key,
                                            std::vector<std::string> fallback);

  /// True when the key is set; does not count as reading it.
  bool has(const std::string& key) const;

  /// Reads the JSON object `value`, found at `key`, with a reader of its
  /// own whose errors name `backends.<name>.<key>.<sub key>`, and keeps its
  /// first error. Nested objects (one role) are checked as strictly as the
  /// top level: unknown keys are refused.
  void section(const std::string& key, const nlohmann::json& value,
               const std::function<void(settings_reader&)>& read);

  /// Fails on the first problem seen, or on a key nobody read.
  caf::error finish();

  /// Records a problem with a key found by the caller's own checks.
  void fail(const std::string& key, const std::string& problem);

  std::string full_key(const std::string& key) const {
    return "backends." + name_ + "." + key;
  }

private:
  /// `implicit`: keys read by someone else (the registry reads `type`).
  settings_reader(std::string backend_name, const nlohmann::json& settings,
                  std::set<std::string> implicit);

  const nlohmann::json* find(const std::string& key);

  std::string name_;
  const nlohmann::json& settings_;
  std::set<std::string> read_;
  caf::error error_;
};

} // namespace tlm
