#include "app/config.hpp"

#include <algorithm>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "api/http_framing.hpp"
#include "cloud_backends/registry.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

caf::error config_error(std::string message) {
  return make_error(ec::invalid_request, std::move(message));
}

/// What a JSON value is, for a message that says what was found instead.
std::string kind_of(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float:
      return "a number with a fraction or exponent";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    default: return "an object";
  }
}

caf::error wrong_type(const std::string& key, const char* expected,
                      const json& value) {
  return config_error(key + " must be " + expected + " (got " + kind_of(value)
                      + ")");
}

caf::error read_key(const json& value, const std::string& key,
                    std::string& out) {
  if (!value.is_string())
    return wrong_type(key, "a string", value);
  out = value.get<std::string>();
  return caf::none;
}

caf::error read_key(const json& value, const std::string& key, bool& out) {
  if (!value.is_boolean())
    return wrong_type(key, "true or false", value);
  out = value.get<bool>();
  return caf::none;
}

/// An integer that fits `Int`: nlohmann's get would truncate a fraction
/// and wrap a number too large without a word.
template <class Int>
caf::error read_key(const json& value, const std::string& key, Int& out) {
  static_assert(std::is_integral_v<Int>);
  if (!value.is_number_integer())
    return wrong_type(key, "an integer", value);
  using limits = std::numeric_limits<Int>;
  bool fits = value.is_number_unsigned()
                ? value.get<uint64_t>() <= uint64_t{limits::max()}
                : value.get<int64_t>() >= int64_t{limits::min()}
                    && value.get<int64_t>() <= int64_t{limits::max()};
  if (!fits)
    return config_error(key + " must be an integer from "
                        + std::to_string(limits::min()) + " to "
                        + std::to_string(limits::max()));
  out = value.get<Int>();
  return caf::none;
}

/// Reads a config file into JSON; a syntax error gives its line and column.
caf::expected<json> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return config_error("cannot read the config file '" + path + "'");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line L,
    // column C: ..."; the bracketed id means nothing to an operator.
    std::string detail = e.what();
    if (auto end = detail.find("] "); end != std::string::npos)
      detail.erase(0, end + 2);
    return config_error("the config file '" + path
                        + "' is not valid JSON: " + detail);
  }
}

// -- HTTP limits (issue 9) ----------------------------------------------------

/// Reads an HTTP limit from the config file; nothing when `key` is not one.
std::optional<caf::error> read_http_key(const std::string& key,
                                        const json& value, http_limits& out) {
  if (key == "http_read_timeout_ms")
    return read_key(value, key, out.read_timeout_ms);
  if (key == "http_idle_timeout_ms")
    return read_key(value, key, out.idle_timeout_ms);
  if (key == "http_max_per_peer")
    return read_key(value, key, out.max_per_peer);
  return std::nullopt;
}

caf::error validate_http(const http_limits& http) {
  if (http.read_timeout_ms < 1 || http.read_timeout_ms > 3'600'000)
    return config_error("http_read_timeout_ms must be 1 to 3600000");
  if (http.idle_timeout_ms < 1 || http.idle_timeout_ms > 3'600'000)
    return config_error("http_idle_timeout_ms must be 1 to 3600000");
  if (http.max_per_peer < 1)
    return config_error("http_max_per_peer must be positive");
  return caf::none;
}

/// The HTTP limit flags; `apply` copies the ones given into a config.
std::function<void(http_limits&)> add_http_flags(CLI::App& app,
                                                 http_limits& flags) {
  const http_limits defaults;
  auto* read = app.add_option(
    "--http-read-timeout-ms", flags.read_timeout_ms,
    "ms within which a request's header and body must arrive, counted from "
    "its connection being served or, on keep-alive, from its first byte; "
    "later: 408 and close (default "
      + std::to_string(defaults.read_timeout_ms) + ")");
  auto* idle = app.add_option(
    "--http-idle-timeout-ms", flags.idle_timeout_ms,
    "ms a keep-alive connection may wait for its next request (default "
      + std::to_string(defaults.idle_timeout_ms) + ")");
  auto* peer = app.add_option(
    "--http-max-per-peer", flags.max_per_peer,
    "HTTP connections one client address may have open or queued; more "
    "get 503 (default "
      + std::to_string(defaults.max_per_peer) + ")");
  return [=, &flags](http_limits& cfg) {
    if (read->count() > 0)
      cfg.read_timeout_ms = flags.read_timeout_ms;
    if (idle->count() > 0)
      cfg.idle_timeout_ms = flags.idle_timeout_ms;
    if (peer->count() > 0)
      cfg.max_per_peer = flags.max_per_peer;
  };
}

// -- TCP limits (issue 9): timeouts and reply budgets -------------------------

/// Reads a TCP limit from the config file; nothing when `key` is not one.
std::optional<caf::error> read_tcp_key(const std::string& key,
                                       const json& value, tcp_limits& out) {
  if (key == "tcp_idle_timeout_ms")
    return read_key(value, key, out.idle_timeout_ms);
  if (key == "tcp_auth_timeout_ms")
    return read_key(value, key, out.auth_timeout_ms);
  if (key == "tcp_reply_buffer_bytes")
    return read_key(value, key, out.reply_bytes_per_connection);
  if (key == "tcp_reply_buffer_total_bytes")
    return read_key(value, key, out.reply_bytes_total);
  return std::nullopt;
}

caf::error validate_tcp(const tcp_limits& limits) {
  if (limits.idle_timeout_ms < 0)
    return config_error("tcp_idle_timeout_ms must be 0 (never) or more");
  if (limits.auth_timeout_ms < 1)
    return config_error("tcp_auth_timeout_ms must be at least 1");
  if (limits.reply_bytes_per_connection < 1024)
    return config_error("tcp_reply_buffer_bytes must be at least 1024");
  if (limits.reply_bytes_total < limits.reply_bytes_per_connection)
    return config_error("tcp_reply_buffer_total_bytes must be at least "
                        "tcp_reply_buffer_bytes");
  return caf::none;
}

/// The TCP limit flags; `apply` copies the ones given into a config.
std::function<void(tcp_limits&)> add_tcp_flags(CLI::App& app,
                                               tcp_limits& flags) {
  const tcp_limits d;
  auto* idle = app.add_option(
    "--tcp-idle-timeout-ms", flags.idle_timeout_ms,
    "close a TCP connection after this long without a byte either way "
    "and no request in flight; a write its client does not read counts "
    "as idle (default "
      + std::to_string(d.idle_timeout_ms) + "; 0: never)");
  auto* auth = app.add_option(
    "--tcp-auth-timeout-ms", flags.auth_timeout_ms,
    "with API keys, close a TCP connection that has not authenticated "
    "after this long (default "
      + std::to_string(d.auth_timeout_ms) + "); before auth a line may have "
      + std::to_string(max_pre_auth_line_bytes) + " bytes");
  auto* per_conn = app.add_option(
    "--tcp-reply-buffer-bytes", flags.reply_bytes_per_connection,
    "reply bytes a TCP connection may hold unread; then it reads no more "
    "requests until its client reads (default "
      + std::to_string(d.reply_bytes_per_connection) + ", 8 MiB)");
  auto* total = app.add_option(
    "--tcp-reply-buffer-total-bytes", flags.reply_bytes_total,
    "reply bytes all TCP connections together may hold unread (default "
      + std::to_string(d.reply_bytes_total) + ", 256 MiB)");
  return [=, &flags](tcp_limits& cfg) {
    if (idle->count() > 0)
      cfg.idle_timeout_ms = flags.idle_timeout_ms;
    if (auth->count() > 0)
      cfg.auth_timeout_ms = flags.auth_timeout_ms;
    if (per_conn->count() > 0)
      cfg.reply_bytes_per_connection = flags.reply_bytes_per_connection;
    if (total->count() > 0)
      cfg.reply_bytes_total = flags.reply_bytes_total;
  };
}

// -- token_server's surface (issue 15) ----------------------------------------

/// token_server's own bounds, checked where a lifetime is given: an unset
/// one follows narrower ttl bounds below them.
caf::error lifetime_problem(int64_t ms) {
  if (ms < token_server_settings::min_lifetime_ms
      || ms > token_server_settings::max_lifetime_ms)
    return config_error("token_lifetime_ms must be 1800000 to 345600000 "
                        "(30 min to 96 h, as in token_server)");
  return caf::none;
}

/// Reads a token_server setting; nothing when `key` is not one.
std::optional<caf::error> read_token_server_key(const std::string& key,
                                                const json& value,
                                                token_server_settings& out) {
  if (key == "token_server_prefix")
    return read_key(value, key, out.prefix);
  if (key == "token_server_dump")
    return read_key(value, key, out.dump);
  if (key == "token_lifetime_ms") {
    if (auto err = read_key(value, key, out.lifetime_ms))
      return err;
    return lifetime_problem(out.lifetime_ms);
  }
  return std::nullopt;
}

caf::error validate_token_server(const token_server_settings& ts,
                                 int64_t min_ttl_ms, int64_t max_ttl_ms) {
  auto& p = ts.prefix;
  if (p.empty() || p.front() != '/' || p.back() != '/'
      || p.find_first_of("?#") != std::string::npos || parse_target(p).error)
    return config_error("token_server_prefix must be a path that begins and "
                        "ends with '/', such as / or /ts/");
  auto segs = parse_target(p).segments;
  if (segs.size() > 1 && (segs[0] == "v1" || segs[0] == "healthz"))
    return config_error("token_server_prefix must not lie under /v1/ or "
                        "/healthz/ (our own routes)");
  if (ts.lifetime_ms < min_ttl_ms || ts.lifetime_ms > max_ttl_ms)
    return config_error("token_lifetime_ms must lie between min_ttl_ms and "
                        "max_ttl_ms");
  return caf::none;
}

/// token_server's flags; `apply` copies the ones given into a config.
std::function<void(daemon_config&)>
add_token_server_flags(CLI::App& app, token_server_settings& flags) {
  auto* prefix = app.add_option(
    "--token-server-prefix", flags.prefix,
    "path under which token_server's routes token and dump are served "
    "(default /)");
  auto* dump = app.add_flag("--dump", flags.dump,
                            "serve token_server's HEAD dump, which logs the "
                            "expiry and metadata of its tokens");
  auto* lifetime =
    app
      .add_option(
        "--token-lifetime", flags.lifetime_ms,
        "ttl in ms of tokens made through token_server's routes, 1800000 to "
        "345600000 (default 7200000, 2 h)")
      ->check(CLI::Range(token_server_settings::min_lifetime_ms,
                         token_server_settings::max_lifetime_ms));
  return [=, &flags](daemon_config& cfg) {
    auto& ts = cfg.token_server;
    if (prefix->count() > 0)
      ts.prefix = flags.prefix;
    if (dump->count() > 0)
      ts.dump = flags.dump;
    if (lifetime->count() > 0)
      ts.lifetime_ms = flags.lifetime_ms;
    // An unset lifetime follows narrowed ttl bounds instead of
    // contradicting them.
    else if (ts.lifetime_ms == token_server_settings{}.lifetime_ms)
      ts.lifetime_ms = std::clamp(ts.lifetime_ms, cfg.min_ttl_ms,
                                  std::max(cfg.min_ttl_ms, cfg.max_ttl_ms));
  };
}

/// Applies a JSON config file; every key must be known.
caf::error apply_file(const std::string& path, daemon_config& cfg) {
  auto doc = read_file(path);
  if (!doc)
    return doc.error();
  if (!doc->is_object())
    return config_error("the config file '" + path
                        + "' is not a JSON object (got " + kind_of(*doc) + ")");
  for (auto& [key, value] : doc->items()) {
    caf::error err;
    if (key == "bind")
      err = read_key(value, key, cfg.bind);
    else if (key == "http_port")
      err = read_key(value, key, cfg.http_port);
    else if (key == "tcp_port")
      err = read_key(value, key, cfg.tcp_port);
    else if (key == "storage")
      err = read_key(value, key, cfg.storage);
    else if (key == "storage_password_file")
      err = read_key(value, key, cfg.storage_password_file);
    else if (key == "default_backend")
      err = read_key(value, key, cfg.default_backend);
    else if (key == "default_ttl_ms")
      err = read_key(value, key, cfg.default_ttl_ms);
    else if (key == "min_ttl_ms")
      err = read_key(value, key, cfg.min_ttl_ms);
    else if (key == "max_ttl_ms")
      err = read_key(value, key, cfg.max_ttl_ms);
    else if (key == "api_key_file")
      err = read_key(value, key, cfg.api_key_file);
    else if (key == "retry_base_ms")
      err = read_key(value, key, cfg.retry_base_ms);
    else if (key == "retry_max_ms")
      err = read_key(value, key, cfg.retry_max_ms);
    else if (key == "max_revoke_attempts")
      err = read_key(value, key, cfg.max_revoke_attempts);
    else if (key == "shared_poll_ms")
      err = read_key(value, key, cfg.shared_poll_ms);
    else if (key == "instance_timeout_ms")
      err = read_key(value, key, cfg.instance_timeout_ms);
    else if (key == "tcp_max_connections")
      err = read_key(value, key, cfg.tcp_max_connections);
    else if (key == "http_threads")
      err = read_key(value, key, cfg.http_threads);
    else if (auto http = read_http_key(key, value, cfg.http))
      err = *http;
    else if (auto tcp = read_tcp_key(key, value, cfg.tcp))
      err = *tcp;
    else if (auto ts = read_token_server_key(key, value, cfg.token_server))
      err = *ts;
    else if (key == "backends") {
      if (!value.is_object() || value.empty())
        err = config_error("config key 'backends' must be a non-empty "
                           "object of name -> settings");
      else
        cfg.backends = value;
    } else
      err = config_error("unknown config key '" + key + "' in '" + path + "'");
    if (err)
      return err;
  }
  return caf::none;
}

/// Checks each backend's `type` before the default backend is looked up:
/// a mistyped type usually comes with a backend named after it, and would
/// otherwise surface as "default_backend ... is not among the configured
/// backends". The settings themselves are the backend's to check.
caf::error check_backend_types(const json& backends) {
  auto known = cloud_backend_types();
  for (auto& [name, settings] : backends.items()) {
    auto key = "backends." + name;
    if (!settings.is_object())
      return wrong_type(key, "an object", settings);
    auto type = settings.find("type");
    if (type == settings.end())
      return config_error(key
                          + ".type is missing: it names the backend "
                            "type");
    if (!type->is_string())
      return wrong_type(key + ".type", "a string", *type);
    auto& text = type->get_ref<const std::string&>();
    if (std::find(known.begin(), known.end(), text) == known.end()) {
      std::string list;
      for (auto& t : known)
        list += (list.empty() ? "" : ", ") + t;
      return config_error(key + ".type '" + text
                          + "' is not a backend type; known: " + list);
    }
  }
  return caf::none;
}

} // namespace

caf::error validate(const daemon_config& cfg) {
  auto port_ok = [](int p) { return p >= 0 && p <= 65535; };
  if (!port_ok(cfg.http_port))
    return config_error("http_port must be 0 to 65535");
  if (!port_ok(cfg.tcp_port))
    return config_error("tcp_port must be 0 to 65535");
  if (cfg.min_ttl_ms < 1)
    return config_error("min_ttl_ms must be at least 1");
  if (cfg.max_ttl_ms < cfg.min_ttl_ms)
    return config_error("max_ttl_ms must be at least min_ttl_ms");
  if (cfg.default_ttl_ms < cfg.min_ttl_ms
      || cfg.default_ttl_ms > cfg.max_ttl_ms)
    return config_error("default_ttl_ms must lie between min_ttl_ms and "
                        "max_ttl_ms");
  if (cfg.retry_base_ms < 1 || cfg.retry_max_ms < cfg.retry_base_ms)
    return config_error("retry_base_ms must be at least 1 and retry_max_ms "
                        "at least retry_base_ms");
  if (cfg.max_revoke_attempts < 1 || cfg.max_revoke_attempts > 1'000'000)
    return config_error("max_revoke_attempts must be 1 to 1000000");
  if (cfg.shared_poll_ms < 10 || cfg.shared_poll_ms > 60'000)
    return config_error("shared_poll_ms must be 10 to 60000");
  if (cfg.instance_timeout_ms < 300 || cfg.instance_timeout_ms > 600'000)
    return config_error("instance_timeout_ms must be 300 to 600000");
  if (cfg.tcp_max_connections < 1 || cfg.http_threads < 1)
    return config_error("tcp_max_connections and http_threads must be "
                        "positive");
  if (auto err = validate_http(cfg.http))
    return err;
  if (auto err = validate_tcp(cfg.tcp))
    return err;
  if (auto err = validate_token_server(cfg.token_server, cfg.min_ttl_ms,
                                       cfg.max_ttl_ms))
    return err;
  if (auto err = check_backend_types(cfg.backends))
    return err;
  if (!cfg.backends.contains(cfg.default_backend))
    return config_error("default_backend '" + cfg.default_backend
                        + "' is not among the configured backends");
  return caf::none;
}

namespace {

/// A flag overrides the config file's value only when given.
template <class T>
void override_with(CLI::Option* opt, T& target, const T& value) {
  if (opt->count() > 0)
    target = value;
}

/// Where tlmd listens and keeps its leases; applies the given ones.
std::function<void(daemon_config&)> add_listen_flags(CLI::App& app,
                                                     daemon_config& flags) {
  auto* bind = app.add_option("--bind", flags.bind,
                              "address to listen on (default 127.0.0.1); a "
                              "non-loopback address needs API keys");
  auto* http = app.add_option("--http-port", flags.http_port,
                              "HTTP port (default 3666; 0 picks a free one)");
  auto* tcp = app.add_option("--tcp-port", flags.tcp_port,
                             "TCP port (default 3667; 0 picks a free one)");
  auto* storage = app.add_option("--storage", flags.storage,
                                 "'memory', 'sqlite:PATH' (default "
                                 "sqlite:./data/tlm.db; PATH's folder must "
                                 "exist, only ./data is created), "
                                 "'postgresql://USER@HOST:PORT/DBNAME' or "
                                 "'postgres:KEY=VALUE ...' (libpq)");
  auto* pw_file = app.add_option("--storage-password-file",
                                 flags.storage_password_file,
                                 "file whose first line is the PostgreSQL "
                                 "password (or use PGPASSFILE)");
  auto* keys = app.add_option("--api-key-file", flags.api_key_file,
                              "file of API keys, one a line; when set, HTTP "
                              "needs 'Authorization: Bearer <key>' and TCP "
                              "an {\"action\":\"auth\",\"api_key\":...} "
                              "first");
  auto* conns = app.add_option("--tcp-max-connections",
                               flags.tcp_max_connections,
                               "TCP connections served at once; at the "
                               "limit a new client takes the place of the "
                               "longest-idle one (default 1024)");
  auto* threads = app.add_option(
    "--http-threads", flags.http_threads,
    "sizes the HTTP connection limit: N + max(1024, 4N) connections open "
    "at once, beyond which a new one gets 503 (default "
      + std::to_string(daemon_config{}.http_threads)
      + "; the name is historical: event loops serve every connection)");
  return [=, &flags](daemon_config& cfg) {
    override_with(bind, cfg.bind, flags.bind);
    override_with(http, cfg.http_port, flags.http_port);
    override_with(tcp, cfg.tcp_port, flags.tcp_port);
    override_with(storage, cfg.storage, flags.storage);
    override_with(pw_file, cfg.storage_password_file,
                  flags.storage_password_file);
    override_with(keys, cfg.api_key_file, flags.api_key_file);
    override_with(conns, cfg.tcp_max_connections, flags.tcp_max_connections);
    override_with(threads, cfg.http_threads, flags.http_threads);
  };
}

/// The lease policy: ttl bounds and revocation retries.
std::function<void(daemon_config&)> add_policy_flags(CLI::App& app,
                                                     daemon_config& flags) {
  auto* def_ttl = app.add_option("--default-ttl", flags.default_ttl_ms,
                                 "ttl in ms when a create names none "
                                 "(default 3600000, 1 h)");
  auto* min_ttl = app.add_option("--min-ttl", flags.min_ttl_ms,
                                 "smallest ttl in ms (default 1000)");
  auto* max_ttl = app.add_option("--max-ttl", flags.max_ttl_ms,
                                 "largest ttl and total life of a lease in "
                                 "ms (default 345600000, 96 h)");
  auto* retry_base = app.add_option(
    "--retry-base", flags.retry_base_ms,
    "first wait in ms before retrying a failed revocation; waits double "
    "with full jitter (default 1000)");
  auto* retry_max = app.add_option("--retry-max", flags.retry_max_ms,
                                   "longest wait in ms between revocation "
                                   "retries (default 300000, 5 min)");
  auto* attempts = app.add_option(
    "--max-revoke-attempts", flags.max_revoke_attempts,
    "failed revocations after which a lease is shown as irrevocable (still "
    "retried every --retry-max; default 10)");
  auto* poll = app.add_option(
    "--shared-poll-ms", flags.shared_poll_ms,
    "shared storage: how often an instance claims due or orphaned work "
    "(default 1000)");
  auto* timeout = app.add_option(
    "--instance-timeout-ms", flags.instance_timeout_ms,
    "shared storage: an instance silent this long is dead and the others "
    "take over its work (default 3000)");
  return [=, &flags](daemon_config& cfg) {
    override_with(def_ttl, cfg.default_ttl_ms, flags.default_ttl_ms);
    override_with(min_ttl, cfg.min_ttl_ms, flags.min_ttl_ms);
    override_with(max_ttl, cfg.max_ttl_ms, flags.max_ttl_ms);
    override_with(retry_base, cfg.retry_base_ms, flags.retry_base_ms);
    override_with(retry_max, cfg.retry_max_ms, flags.retry_max_ms);
    override_with(attempts, cfg.max_revoke_attempts, flags.max_revoke_attempts);
    override_with(poll, cfg.shared_poll_ms, flags.shared_poll_ms);
    override_with(timeout, cfg.instance_timeout_ms, flags.instance_timeout_ms);
    // An unset default follows narrowed bounds instead of contradicting
    // them.
    if (def_ttl->count() == 0
        && cfg.default_ttl_ms == daemon_config{}.default_ttl_ms)
      cfg.default_ttl_ms = std::clamp(cfg.default_ttl_ms, cfg.min_ttl_ms,
                                      std::max(cfg.min_ttl_ms, cfg.max_ttl_ms));
  };
}

command_line stop_with(int code, std::string output) {
  command_line result;
  result.exit_now = true;
  result.exit_code = code;
  result.output = std::move(output);
  return result;
}

} // namespace

command_line parse_command_line(int argc, char** argv) {
  CLI::App app{"tlmd: a token lease manager. It hands out expiring tokens "
               "over a JSON action protocol (TCP: one object a line; HTTP: "
               "POST /v1/actions and REST routes) and revokes each token at "
               "its backend when its lease ends, also across restarts.",
               "tlmd"};
  std::string config_file;
  daemon_config flags;
  app.add_option("--config", config_file,
                 "JSON config file; flags override its values. Keys: bind, "
                 "http_port, tcp_port, storage, storage_password_file, "
                 "default_backend, "
                 "default_ttl_ms, min_ttl_ms, max_ttl_ms, api_key_file, "
                 "retry_base_ms, retry_max_ms, max_revoke_attempts, "
                 "shared_poll_ms, instance_timeout_ms, "
                 "tcp_max_connections, http_threads, http_read_timeout_ms, "
                 "http_idle_timeout_ms, http_max_per_peer, "
                 "tcp_idle_timeout_ms, tcp_auth_timeout_ms, "
                 "tcp_reply_buffer_bytes, tcp_reply_buffer_total_bytes, "
                 "token_server_prefix, token_server_dump, token_lifetime_ms, "
                 "backends ({\"<name>\":{\"type\":\"local\"}})");
  auto appliers = {add_listen_flags(app, flags), add_policy_flags(app, flags),
                   add_token_server_flags(app, flags.token_server)};
  auto apply_http_flags = add_http_flags(app, flags.http);
  auto apply_tcp_flags = add_tcp_flags(app, flags.tcp);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    auto code = app.exit(e, out, err);
    return stop_with(code, out.str() + err.str());
  }
  command_line result;
  auto& cfg = result.config;
  if (!config_file.empty())
    if (auto err = apply_file(config_file, cfg))
      return stop_with(2, "tlmd: " + message_of(err) + "\n");
  for (auto& apply : appliers)
    apply(cfg);
  apply_http_flags(cfg.http);
  apply_tcp_flags(cfg.tcp);
  if (auto err = validate(cfg))
    return stop_with(2, "tlmd: " + message_of(err) + "\n");
  return result;
}

} // namespace tlm
