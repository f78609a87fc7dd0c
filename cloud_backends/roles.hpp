#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "cloud_backends/settings.hpp"

namespace tlm {

// -- the parts that do not depend on what a role holds ------------------------

namespace detail {

/// Reads `roles` and `default_role`, calling `each` with every role's name
/// and a reader of its object, or `shorthand` when `roles` is absent (its
/// role is then `default`). Returns the default role's name.
std::string read_role_names(
  settings_reader& in, const std::vector<std::string>& shorthand_keys,
  const std::function<void(const std::string&, settings_reader&)>& each,
  const std::function<void()>& shorthand);

/// The name in `options.role`, or `fallback` when absent; `known` says
/// whether a name is a role of the backend.
caf::expected<std::string>
role_name(const std::string& backend, const nlohmann::json& options,
          const std::string& fallback,
          const std::function<bool(const std::string&)>& known,
          const std::string& known_list);

} // namespace detail

/// A role every create without `role` gets when the config uses the
/// shorthand keys instead of `roles`.
inline const std::string shorthand_role = "default";

/// The named roles of one backend (as Vault has them): what a lease may
/// get, one of them the default. Roles are read once at start, so a bad
/// one refuses the start; a create names one in `options.role` and may
/// narrow within it, never widen. What "narrow" means is each backend's
/// own check (it alone knows its rights), which `Rights` carries.
template <class Rights>
class role_table {
public:
  using reader = std::function<Rights(settings_reader&)>;

  /// Reads `roles` (an object of role objects, each read by `read_role`)
  /// and `default_role`. Without `roles`, `read_shorthand` makes the role
  /// `default` from the backend's older top-level `shorthand_keys`;
  /// setting both refuses the start.
  static role_table read(settings_reader& in,
                         const std::vector<std::string>& shorthand_keys,
                         const reader& read_role,
                         const reader& read_shorthand) {
    role_table result;
    result.default_ = detail::read_role_names(
      in, shorthand_keys,
      [&](const std::string& name, settings_reader& role) {
        result.roles_.emplace(name, read_role(role));
      },
      [&] { result.roles_.emplace(shorthand_role, read_shorthand(in)); });
    return result;
  }

  struct choice {
    std::string name;
    const Rights* rights;
  };

  /// The role `options.role` names, or the default; an unknown one is
  /// `invalid_request` naming it.
  caf::expected<choice> pick(const std::string& backend,
                             const nlohmann::json& options) const {
    std::string list;
    for (auto& [name, _] : roles_)
      list += (list.empty() ? "" : ", ") + name;
    auto name = detail::role_name(
      backend, options, default_,
      [this](const std::string& n) { return roles_.count(n) != 0; }, list);
    if (!name)
      return std::move(name.error());
    return choice{*name, &roles_.at(*name)};
  }

private:
  std::map<std::string, Rights> roles_;
  std::string default_;
};

/// For narrowing a list of words (categories, commands): the requested
/// array `requested` (at `options.<option>`), each word one of `allowed`,
/// or all of `allowed` when the option is absent. `normalize` maps a word
/// to the form `allowed` holds, or to "" when it is no valid word at all.
caf::expected<std::vector<std::string>>
narrow_words(const nlohmann::json& options, const std::string& option,
             const std::vector<std::string>& allowed, const std::string& role,
             const std::function<std::string(const std::string&)>& normalize);

/// `invalid_request` about `options.<option>`, saying what is wrong.
caf::error option_error(const std::string& option, const std::string& problem);

} // namespace tlm
