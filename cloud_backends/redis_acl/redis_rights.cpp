#include "cloud_backends/redis_acl/redis_rights.hpp"

#include <algorithm>
#include <set>

#include "cloud_backends/roles.hpp"
#include "core/error.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

/// Redis 7.0's `ACL CAT admin` and `ACL CAT dangerous`: rights that change
/// users, config, replication or persistence, or that read or wipe beyond
/// a key pattern. Checked when a role is read, so a config that grants them
/// by mistake refuses the start; the rule's trailing `-@admin -@dangerous`
/// covers what later versions add.
const std::set<std::string>& dangerous_commands() {
  static const std::set<std::string> names{"acl|deluser",
                                           "acl|dryrun",
                                           "acl|getuser",
                                           "acl|list",
                                           "acl|load",
                                           "acl|log",
                                           "acl|save",
                                           "acl|setuser",
                                           "acl|users",
                                           "bgrewriteaof",
                                           "bgsave",
                                           "client|kill",
                                           "client|list",
                                           "client|no-evict",
                                           "client|pause",
                                           "client|unblock",
                                           "client|unpause",
                                           "cluster|addslots",
                                           "cluster|addslotsrange",
                                           "cluster|bumpepoch",
                                           "cluster|count-failure-reports",
                                           "cluster|delslots",
                                           "cluster|delslotsrange",
                                           "cluster|failover",
                                           "cluster|flushslots",
                                           "cluster|forget",
                                           "cluster|meet",
                                           "cluster|replicas",
                                           "cluster|replicate",
                                           "cluster|reset",
                                           "cluster|saveconfig",
                                           "cluster|set-config-epoch",
                                           "cluster|setslot",
                                           "cluster|slaves",
                                           "config|get",
                                           "config|resetstat",
                                           "config|rewrite",
                                           "config|set",
                                           "debug",
                                           "failover",
                                           "flushall",
                                           "flushdb",
                                           "info",
                                           "keys",
                                           "lastsave",
                                           "latency|doctor",
                                           "latency|graph",
                                           "latency|histogram",
                                           "latency|history",
                                           "latency|latest",
                                           "latency|reset",
                                           "migrate",
                                           "module|list",
                                           "module|load",
                                           "module|loadex",
                                           "module|unload",
                                           "monitor",
                                           "pfdebug",
                                           "pfselftest",
                                           "psync",
                                           "replconf",
                                           "replicaof",
                                           "restore",
                                           "restore-asking",
                                           "role",
                                           "save",
                                           "shutdown",
                                           "slaveof",
                                           "slowlog|get",
                                           "slowlog|len",
                                           "slowlog|reset",
                                           "sort",
                                           "sort_ro",
                                           "swapdb",
                                           "sync"};
  return names;
}

const std::set<std::string> dangerous_categories{"all", "admin", "dangerous"};

/// A command granted whole (`client`) also grants its dangerous
/// subcommands (`client|kill`).
bool dangerous_command(const std::string& name) {
  auto& names = dangerous_commands();
  if (names.count(name) != 0)
    return true;
  if (name.find('|') != std::string::npos)
    return false;
  auto i = names.lower_bound(name + "|");
  return i != names.end() && i->rfind(name + "|", 0) == 0;
}

std::string lower(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

/// Category names are letters only; "" when `text` is none.
std::string category_word(const std::string& text) {
  if (text.empty() || text.size() > 40
      || !std::all_of(text.begin(), text.end(), [](char c) {
           return std::isalpha(static_cast<unsigned char>(c));
         }))
    return {};
  return lower(text);
}

/// Command names, with at most one `|subcommand`; "" when `text` is none.
std::string command_word(const std::string& text) {
  auto bar = text.find('|');
  if (text.empty() || text.size() > 60 || text.front() == '|'
      || text.back() == '|'
      || (bar != std::string::npos
          && text.find('|', bar + 1) != std::string::npos)
      || !std::all_of(text.begin(), text.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '|'
                  || c == '-' || c == '_';
         }))
    return {};
  return lower(text);
}

/// Key globs go into the rule after `~` as single words: spaces or rule
/// characters (`>`, `+`, `@`, `%`, `(`, ...) would add rights.
bool key_glob(const std::string& text) {
  return !text.empty() && text.size() <= 200
         && std::all_of(text.begin(), text.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c))
                     || std::string_view{"_:.*?-/[]{}|"}.find(c)
                          != std::string_view::npos;
            });
}

/// Checks the words of `key` in place (normalized), naming what is wrong.
void check_words(settings_reader& in, const std::string& key,
                 std::vector<std::string>& words,
                 std::string (*normalize)(const std::string&),
                 const char* example) {
  for (auto& w : words) {
    auto n = normalize(w);
    if (n.empty()) {
      in.fail(key, "holds '" + w.substr(0, 60)
                     + "', which is no plain name "
                       "such as \""
                     + example + "\"");
      return;
    }
    w = n;
  }
}

void check_role(settings_reader& in, redis_rights& r, const char* patterns,
                const char* categories, const char* commands) {
  for (auto& p : r.key_patterns)
    if (!key_glob(p))
      in.fail(patterns, "must hold globs of [A-Za-z0-9_:.*?-/[]{}|] "
                        "without ACL rule characters");
  check_words(in, categories, r.categories, category_word, "read");
  check_words(in, commands, r.commands, command_word, "get");
  if (r.categories.empty() && r.commands.empty())
    in.fail(categories, "or commands must grant at least one command");
  if (r.allow_dangerous)
    return;
  for (auto& c : r.categories)
    if (dangerous_categories.count(c) != 0)
      in.fail(categories, "holds '" + c
                            + "', which needs \"allow_dangerous\""
                              ": true in the role");
  for (auto& c : r.commands)
    if (dangerous_command(c))
      in.fail(commands,
              "holds '" + c
                + "', which can change users, config "
                  "or all data and needs \"allow_dangerous\": true in "
                  "the role");
}

caf::expected<std::vector<std::string>>
narrow_patterns(const redis_rights& role, const std::string& role_name,
                const json& options) {
  auto one = options.find("key_pattern");
  auto many = options.find("key_patterns");
  if (one != options.end() && many != options.end())
    return option_error("key_pattern", "and options.key_patterns cannot both "
                                       "be given");
  if (one == options.end() && many == options.end())
    return role.key_patterns;
  std::string option = one != options.end() ? "key_pattern" : "key_patterns";
  json requested = one != options.end() ? json::array({*one}) : *many;
  if (!requested.is_array() || requested.empty())
    return option_error(option, "must be a non-empty array of key globs");
  std::vector<std::string> result;
  for (auto& item : requested) {
    auto p = item.is_string() ? item.get<std::string>() : "";
    if (!key_glob(p))
      return option_error(option, "must be one word of "
                                  "[A-Za-z0-9_:.*?-/[]{}|] without ACL rule "
                                  "characters");
    if (std::none_of(
          role.key_patterns.begin(), role.key_patterns.end(),
          [&](const std::string& outer) { return glob_within(p, outer); })) {
      std::string allowed;
      for (auto& k : role.key_patterns)
        allowed += (allowed.empty() ? "" : ", ") + k;
      return option_error(option, "'" + p + "' does not fall inside role '"
                                    + role_name + "' (key patterns: " + allowed
                                    + ")");
    }
    result.push_back(p);
  }
  return result;
}

} // namespace

std::vector<std::string> redis_rights::acl_rule() const {
  std::vector<std::string> words;
  for (auto& p : key_patterns)
    words.push_back("~" + p);
  for (auto& c : categories)
    words.push_back("+@" + c);
  for (auto& c : commands)
    words.push_back("+" + c);
  if (!allow_dangerous) {
    words.push_back("-@admin");
    words.push_back("-@dangerous");
  }
  return words;
}

json redis_rights::to_json() const {
  return json{{"key_patterns", key_patterns},
              {"categories", categories},
              {"commands", commands}};
}

redis_rights read_redis_role(settings_reader& in) {
  redis_rights r;
  r.key_patterns = in.optional_strings("key_patterns", {});
  r.categories = in.optional_strings("categories", {});
  r.commands = in.optional_strings("commands", {});
  r.allow_dangerous = in.optional_bool("allow_dangerous", false);
  if (r.key_patterns.empty())
    in.fail("key_patterns", "is required: a non-empty array of key globs");
  check_role(in, r, "key_patterns", "categories", "commands");
  return r;
}

redis_rights read_redis_shorthand(settings_reader& in) {
  redis_rights r;
  r.key_patterns = {in.optional_string("default_key_pattern", "tlm:*")};
  r.categories = in.optional_strings("default_categories", {"read", "write"});
  check_role(in, r, "default_key_pattern", "default_categories",
             "default_categories");
  return r;
}

bool glob_within(const std::string& inner, const std::string& outer) {
  if (inner == outer)
    return true;
  if (outer.empty() || outer.back() != '*')
    return false;
  auto prefix = outer.substr(0, outer.size() - 1);
  if (prefix.find_first_of("*?[]\\") != std::string::npos)
    return false;
  return inner.compare(0, prefix.size(), prefix) == 0;
}

caf::expected<redis_rights> narrow_redis(const redis_rights& role,
                                         const std::string& role_name,
                                         const json& options) {
  for (auto& [key, _] : options.items())
    if (key != "role" && key != "key_pattern" && key != "key_patterns"
        && key != "categories" && key != "commands")
      return make_error(ec::invalid_request,
                        "the redis_acl backend takes the options ttl, role, "
                        "key_pattern (string), key_patterns, categories and "
                        "commands (arrays of strings), not '"
                          + key + "'");
  redis_rights result;
  result.allow_dangerous = role.allow_dangerous;
  auto patterns = narrow_patterns(role, role_name, options);
  if (!patterns)
    return std::move(patterns.error());
  result.key_patterns = std::move(*patterns);
  auto categories = narrow_words(options, "categories", role.categories,
                                 role_name, category_word);
  if (!categories)
    return std::move(categories.error());
  result.categories = std::move(*categories);
  auto commands = narrow_words(options, "commands", role.commands, role_name,
                               command_word);
  if (!commands)
    return std::move(commands.error());
  result.commands = std::move(*commands);
  if (result.categories.empty() && result.commands.empty())
    return option_error("categories", "and options.commands leave no command "
                                      "to grant");
  return result;
}

} // namespace tlm
