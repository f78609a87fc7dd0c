#include "cli/cli_settings.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <sys/stat.h>

namespace tlm::inline client_api::cli {

namespace {

using nlohmann::json;

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

failure usage(std::string message) {
  return {errc::invalid_request, std::move(message)};
}

/// The config file's settings; every key must be one we know.
result<json> read_config(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return usage("cannot read the config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto doc = json::parse(text.str(), nullptr, false);
  if (!doc.is_object())
    return usage("the config file " + path + " is not a JSON object");
  for (auto& [key, value] : doc.items()) {
    bool known = key == "addr" || key == "api_key_file" || key == "timeout_ms";
    if (!known)
      return usage(path + ": '" + key
                   + "' is not a setting (known: addr, api_key_file, "
                     "timeout_ms)");
    bool typed = key == "timeout_ms" ? value.is_number_integer()
                                     : value.is_string();
    if (!typed)
      return usage(path + ": '" + key + "' must be "
                   + (key == "timeout_ms" ? "an integer" : "a string"));
  }
  return doc;
}

/// The first of flag, environment variable and config key that is set.
std::string pick(const std::string& flag, const env_lookup& env,
                 const char* var, const json& config, const char* key,
                 std::string fallback = {}) {
  if (!flag.empty())
    return flag;
  if (auto v = env(var); v && !v->empty())
    return *v;
  if (config.contains(key))
    return config[key].get<std::string>();
  return fallback;
}

} // namespace

env_lookup process_env() {
  return [](const char* name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name))
      return std::string{v};
    return std::nullopt;
  };
}

std::string config_path(const global_flags& flags, const env_lookup& env) {
  if (!flags.config.empty())
    return flags.config;
  if (auto v = env("TLM_CONFIG"); v && !v->empty())
    return *v;
  std::string base;
  if (auto xdg = env("XDG_CONFIG_HOME"); xdg && !xdg->empty())
    base = *xdg;
  else if (auto home = env("HOME"); home && !home->empty())
    base = *home + "/.config";
  auto path = base.empty() ? "" : base + "/tlm/config.json";
  return !path.empty() && file_exists(path) ? path : "";
}

result<connection_options> resolve_connection(const global_flags& flags,
                                              const env_lookup& env) {
  json config = json::object();
  if (auto path = config_path(flags, env); !path.empty()) {
    auto read = read_config(path);
    if (!read)
      return read.error();
    config = std::move(read.value());
  }
  connection_options opts;
  auto addr = pick(flags.addr, env, "TLM_ADDR", config, "addr",
                   default_address);
  if (auto parsed = parse_address(addr, opts); !parsed)
    return parsed.error();
  auto key_file = pick(flags.api_key_file, env, "TLM_API_KEY_FILE", config,
                       "api_key_file");
  if (!key_file.empty()) {
    auto key = read_api_key_file(key_file);
    if (!key)
      return key.error();
    opts.api_key = std::move(key.value());
  }
  auto timeout = flags.timeout_ms > 0 ? flags.timeout_ms
                                      : config.value("timeout_ms", int64_t{0});
  if (timeout > 0)
    opts.request_timeout = std::chrono::milliseconds{timeout};
  return opts;
}

} // namespace tlm::inline client_api::cli
