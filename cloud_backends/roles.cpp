#include "cloud_backends/roles.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace tlm {

namespace {

/// Role names appear in requests, logs and `extra`: a plain alphabet.
bool plain_role_name(const std::string& name) {
  return !name.empty() && name.size() <= 64
         && std::all_of(name.begin(), name.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '_'
                     || c == '-';
            });
}

} // namespace

namespace detail {

std::string read_role_names(
  settings_reader& in, const std::vector<std::string>& shorthand_keys,
  const std::function<void(const std::string&, settings_reader&)>& each,
  const std::function<void()>& shorthand) {
  auto roles = in.optional_json("roles", nullptr);
  if (roles.is_null()) {
    if (in.has("default_role"))
      in.fail("default_role", "needs roles to choose from");
    shorthand();
    return shorthand_role;
  }
  // Two sources of one fact would leave the reader guessing which wins.
  for (auto& key : shorthand_keys)
    if (!in.optional_json(key, nullptr).is_null())
      in.fail(key, "cannot be combined with " + in.full_key("roles")
                     + ": put it into a role");
  if (!roles.is_object() || roles.empty()) {
    in.fail("roles", "must be a non-empty object of roles");
    return {};
  }
  for (auto& [name, body] : roles.items()) {
    if (!plain_role_name(name)) {
      in.fail("roles." + name, "is no role name: use 1 to 64 of "
                               "[A-Za-z0-9_-]");
      continue;
    }
    in.section("roles." + name, body,
               [&](settings_reader& role) { each(name, role); });
  }
  if (roles.size() == 1 && !in.has("default_role"))
    return roles.begin().key();
  auto fallback = in.required_string("default_role");
  if (!fallback.empty() && !roles.contains(fallback))
    in.fail("default_role", "names '" + fallback + "', which is not in "
                              + in.full_key("roles"));
  return fallback;
}

caf::expected<std::string>
role_name(const std::string& backend, const nlohmann::json& options,
          const std::string& fallback,
          const std::function<bool(const std::string&)>& known,
          const std::string& known_list) {
  auto i = options.find("role");
  if (i == options.end())
    return fallback;
  if (!i->is_string())
    return option_error("role", "must be a string naming a role of backend '"
                                  + backend + "' (" + known_list + ")");
  auto name = i->get<std::string>();
  if (!plain_role_name(name) || !known(name))
    return option_error("role", "'" + name.substr(0, 64)
                                  + "' is not a role of backend '" + backend
                                  + "' (roles: " + known_list + ")");
  return name;
}

} // namespace detail

caf::expected<std::vector<std::string>>
narrow_words(const nlohmann::json& options, const std::string& option,
             const std::vector<std::string>& allowed, const std::string& role,
             const std::function<std::string(const std::string&)>& normalize) {
  auto i = options.find(option);
  if (i == options.end())
    return allowed;
  std::string list;
  for (auto& word : allowed)
    list += (list.empty() ? "" : ", ") + word;
  if (!i->is_array())
    return option_error(option, "must be an array of strings (role '" + role
                                  + "' allows: " + list + ")");
  std::vector<std::string> result;
  for (auto& item : *i) {
    auto word = item.is_string() ? normalize(item.get<std::string>()) : "";
    if (word.empty())
      return option_error(option, "must hold plain names such as '"
                                    + (allowed.empty() ? "read" : allowed[0])
                                    + "'");
    if (std::find(allowed.begin(), allowed.end(), word) == allowed.end())
      return option_error(option, "'" + word + "' is not allowed by role '"
                                    + role + "' (allowed: "
                                    + (list.empty() ? "none" : list) + ")");
    if (std::find(result.begin(), result.end(), word) == result.end())
      result.push_back(word);
  }
  return result;
}

caf::error option_error(const std::string& option, const std::string& problem) {
  return make_error(ec::invalid_request, "options." + option + " " + problem);
}

} // namespace tlm
