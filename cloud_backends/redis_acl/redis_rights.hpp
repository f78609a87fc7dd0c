#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "cloud_backends/settings.hpp"

namespace tlm {

/// What one role of a `redis_acl` backend may grant, or what one lease
/// got: key globs, command categories (without `@`) and single commands
/// (`get`, or `client|setname` for one subcommand), all lower case.
struct redis_rights {
  std::vector<std::string> key_patterns;
  std::vector<std::string> categories;
  std::vector<std::string> commands;
  /// Only a role that says so may hold `@admin`, `@dangerous`, `@all` or
  /// a command Redis counts among them (ACL, CONFIG, MODULE, ...).
  bool allow_dangerous = false;

  /// The ACL SETUSER words after `reset on >password`. Without
  /// `allow_dangerous` they end in `-@admin -@dangerous`, so Redis itself
  /// takes away whatever it counts as dangerous, also in categories (such
  /// as `@write`, which holds FLUSHALL) and in later Redis versions.
  std::vector<std::string> acl_rule() const;

  /// For the token's `extra`: the rights, never a secret.
  nlohmann::json to_json() const;
};

/// One role's object: `key_patterns`, `categories`, `commands`,
/// `allow_dangerous`.
redis_rights read_redis_role(settings_reader& in);

/// The shorthand for the role `default`: `default_key_pattern` and
/// `default_categories` (never dangerous).
redis_rights read_redis_shorthand(settings_reader& in);

/// True when every key the glob `inner` matches is matched by `outer`.
/// Deliberately incomplete, so it never says yes wrongly: either the two
/// are the same glob, or `outer` is a literal prefix (no `*?[]\`) then `*`
/// and `inner` starts with that prefix (so its first characters are
/// literal too). `app:42:*`, `app:x` and `app:?` fall inside `app:*`;
/// `app*` and `a[p]p:*` do not.
bool glob_within(const std::string& inner, const std::string& outer);

/// The rights a create gets: the role's, narrowed by `options`
/// (`key_pattern` or `key_patterns`, `categories`, `commands`), or
/// `invalid_request` naming the option that would widen them.
caf::expected<redis_rights> narrow_redis(const redis_rights& role,
                                         const std::string& role_name,
                                         const nlohmann::json& options);

} // namespace tlm
