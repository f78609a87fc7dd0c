// create, get, renew, revoke, list, exchange (the lease commands) and
// revoke-prefix, job, health (the operator's commands).

#include "cli/commands.hpp"

#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/exit_codes.hpp"
#include "cli/output.hpp"

namespace tlm::inline client_api::cli {

using nlohmann::json;

int report(const failure& f) {
  std::cerr << "tlm: " << to_string(f.code) << ": " << f.message << '\n';
  return exit_code_for(f.code);
}

std::unique_ptr<client> connect(const app_state& st, int& exit_code) {
  auto opts = resolve_connection(st.flags, process_env());
  if (!opts) {
    std::cerr << "tlm: " << opts.error().message << '\n';
    exit_code = exit_usage;
    return nullptr;
  }
  return std::make_unique<client>(std::move(opts.value()));
}

// -- create flags -------------------------------------------------------------

void create_flags::add_to(CLI::App& cmd) {
  cmd.add_option("--backend,-b", backend, "backend name (default: tlmd's)");
  cmd.add_option("--ttl", ttl_ms, "lease time in ms (default: tlmd's)")
    ->check(CLI::PositiveNumber);
  cmd.add_option("--role", role, "the backend role to narrow within");
  cmd.add_flag("--renewable", renewable, "create the lease renewable");
  cmd.add_option("--tag,-t", tags, "a tag (repeatable)");
  cmd.add_option("--option,-o", options,
                 "a backend option KEY=VALUE (repeatable; VALUE is read as "
                 "JSON when it parses, else as a string)");
  cmd.add_option("--options", options_json, "backend options as a JSON object");
  cmd.add_option("--meta", meta, "client data as a JSON object");
  cmd.add_option("--description", description, "a description");
}

result<create_request> create_flags::build() const {
  create_request req;
  req.backend = backend;
  if (ttl_ms > 0)
    req.ttl_ms = ttl_ms;
  req.role = role;
  if (renewable)
    req.renewable = true;
  req.tags = tags;
  req.description = description;
  auto opts = json::parse(options_json.empty() ? "{}" : options_json, nullptr,
                          false);
  if (!opts.is_object())
    return failure{errc::invalid_request, "--options must be a JSON object"};
  for (auto& kv : options) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return failure{errc::invalid_request,
                     "--option '" + kv + "' is not KEY=VALUE"};
    auto value = json::parse(kv.substr(eq + 1), nullptr, false);
    opts[kv.substr(0, eq)] = value.is_discarded() ? json(kv.substr(eq + 1))
                                                  : value;
  }
  req.options = opts.dump();
  auto meta_json = json::parse(meta.empty() ? "{}" : meta, nullptr, false);
  if (!meta_json.is_object())
    return failure{errc::invalid_request, "--meta must be a JSON object"};
  req.meta = meta_json.dump();
  return req;
}

namespace {

/// Prints a lease result: the value alone, JSON, or the field table.
int show_lease(const app_state& st, const result<lease>& r, bool value_only,
               bool capped = false) {
  if (!r)
    return report(r.error());
  if (value_only) {
    std::cout << r->value << '\n';
  } else if (st.json) {
    auto j = json{{"lease", lease_json(r.value())}};
    if (capped)
      j["capped"] = true;
    std::cout << j.dump() << '\n';
  } else {
    print_lease(std::cout, r.value(), true);
    if (capped)
      std::cout << "(the total-life cap made the term shorter than asked)\n";
  }
  return exit_ok;
}

/// Reads a secret from a file, or from stdin for `-`; trailing newline cut.
result<std::string> read_secret(const std::string& path) {
  std::stringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in)
      return failure{errc::cache_error, "cannot read the token file " + path};
    text << in.rdbuf();
  }
  auto s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  if (s.empty())
    return failure{errc::invalid_request, "the token in " + path + " is empty"};
  return s;
}

template <class Fn>
void on_run(CLI::App* cmd, app_state& st, Fn fn) {
  cmd->callback([&st, fn] {
    int code = exit_ok;
    auto c = connect(st, code);
    st.exit_code = c ? fn(*c) : code;
  });
}

void add_create(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("create", "create a lease");
  auto flags = std::make_shared<create_flags>();
  auto value_only = std::make_shared<bool>(false);
  flags->add_to(*cmd);
  cmd->add_flag("--value-only", *value_only, "print only the lease's value");
  on_run(cmd, st, [&st, flags, value_only](client& c) -> int {
    auto req = flags->build();
    if (!req)
      return report(req.error());
    return show_lease(st, c.create_lease(req.value()), *value_only);
  });
}

void add_get(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("get", "show a lease, with its value");
  auto id = std::make_shared<std::string>();
  auto value_only = std::make_shared<bool>(false);
  cmd->add_option("lease_id", *id, "the lease id")->required();
  cmd->add_flag("--value-only", *value_only, "print only the lease's value");
  on_run(cmd, st, [&st, id, value_only](client& c) -> int {
    return show_lease(st, c.get_lease(*id), *value_only);
  });
}

void add_renew(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("renew", "extend a renewable lease");
  auto id = std::make_shared<std::string>();
  auto ttl = std::make_shared<int64_t>(0);
  cmd->add_option("lease_id", *id, "the lease id")->required();
  cmd->add_option("--ttl", *ttl, "the new term in ms (default: the lease's)")
    ->check(CLI::PositiveNumber);
  on_run(cmd, st, [&st, id, ttl](client& c) -> int {
    auto r = c.renew_lease(*id, *ttl);
    if (!r)
      return report(r.error());
    return show_lease(st, r->lease, false, r->capped);
  });
}

void add_revoke(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("revoke", "revoke a lease at its backend");
  auto id = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  cmd->add_option("lease_id", *id, "the lease id")->required();
  cmd->add_flag("--force", *force,
                "drop the record without the backend (an operator's choice)");
  on_run(cmd, st, [&st, id, force](client& c) -> int {
    auto r = c.revoke_lease(*id, *force);
    if (!r)
      return report(r.error());
    if (st.json)
      std::cout << json{{"result", r->confirmed ? "success" : "accepted"},
                        {"message", r->message}}
                     .dump()
                << '\n';
    else if (r->confirmed)
      std::cout << "revoked " << *id << '\n';
    else
      std::cout << "revocation pending: " << r->message << '\n';
    return r->confirmed ? exit_ok : exit_pending;
  });
}

void add_list(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("list", "list leases (every page), no values");
  auto filter = std::make_shared<list_filter>();
  cmd->add_option("--backend,-b", filter->backend, "only this backend's");
  cmd->add_option("--tag,-t", filter->tag, "only leases with this tag");
  cmd->add_option("--state", filter->state, "active, revoking or irrevocable")
    ->check(CLI::IsMember({"active", "revoking", "irrevocable"}));
  cmd->add_option("--page-size", filter->limit, "leases per request (1-1000)")
    ->check(CLI::Range(1, 1000));
  on_run(cmd, st, [&st, filter](client& c) -> int {
    std::vector<lease> leases;
    auto pager = c.list_all(*filter);
    while (auto next = pager.next()) {
      if (!*next)
        return report(next->error());
      leases.push_back(std::move(next->value()));
    }
    if (st.json) {
      auto arr = json::array();
      for (auto& x : leases)
        arr.push_back(lease_json(x));
      std::cout << json{{"leases", arr}}.dump() << '\n';
    } else {
      print_lease_table(std::cout, leases);
    }
    return exit_ok;
  });
}

void add_exchange(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand("exchange",
                                 "swap a local one-time token for a fresh one");
  auto token_file = std::make_shared<std::string>();
  auto meta = std::make_shared<std::string>();
  auto value_only = std::make_shared<bool>(false);
  cmd
    ->add_option("--token-file", *token_file,
                 "file holding the token ('-': stdin); never on the "
                 "command line, where ps would show it")
    ->required();
  cmd->add_option("--meta", *meta, "a JSON Merge Patch for the lease's meta");
  cmd->add_flag("--value-only", *value_only, "print only the new value");
  on_run(cmd, st, [&st, token_file, meta, value_only](client& c) -> int {
    auto token = read_secret(*token_file);
    if (!token)
      return report(token.error());
    return show_lease(st, c.exchange_token(token.value(), *meta), *value_only);
  });
}

} // namespace

void add_lease_commands(CLI::App& app, app_state& st) {
  add_create(app, st);
  add_get(app, st);
  add_renew(app, st);
  add_revoke(app, st);
  add_list(app, st);
  add_exchange(app, st);
}

// -- operator commands --------------------------------------------------------

namespace {

int show_job(const app_state& st, const result<tlm::job>& r) {
  if (!r)
    return report(r.error());
  auto j = json::parse(r->json);
  if (st.json)
    std::cout << json{{"job", j}}.dump() << '\n';
  else
    print_job(std::cout, j);
  return exit_ok;
}

} // namespace

void add_admin_commands(CLI::App& app, app_state& st) {
  auto* prefix = app.add_subcommand(
    "revoke-prefix", "revoke every lease of a backend and/or with a tag");
  auto backend = std::make_shared<std::string>();
  auto tag = std::make_shared<std::string>();
  prefix->add_option("--backend,-b", *backend, "the backend");
  prefix->add_option("--tag,-t", *tag, "the tag");
  on_run(prefix, st, [&st, backend, tag](client& c) -> int {
    if (backend->empty() && tag->empty())
      return report({errc::invalid_request,
                     "revoke-prefix needs --backend or --tag (or both)"});
    return show_job(st, c.start_revoke_prefix(*backend, *tag));
  });

  auto* job = app.add_subcommand("job", "show a revoke-prefix job's progress");
  auto job_id = std::make_shared<std::string>();
  job->add_option("job_id", *job_id, "the job id")->required();
  on_run(job, st, [&st, job_id](client& c) -> int {
    return show_job(st, c.get_job(*job_id));
  });

  auto* health = app.add_subcommand("health", "show tlmd's health");
  on_run(health, st, [&st](client& c) -> int {
    auto r = c.get_health();
    if (!r)
      return report(r.error());
    auto j = json::parse(r->json);
    j.erase("result");
    if (st.json)
      std::cout << j.dump() << '\n';
    else
      print_health(std::cout, j);
    return r->status == "ok" ? exit_ok : exit_pending;
  });
}

} // namespace tlm::inline client_api::cli
