#include "api/api_keys.hpp"

#include <fstream>

#include "core/error.hpp"
#include "core/secrets.hpp"

namespace tlm {

caf::expected<api_keys> api_keys::load(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(ec::invalid_request,
                      "cannot read the API key file '" + path + "'");
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t\r");
    auto last = line.find_last_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#')
      continue;
    keys.push_back(line.substr(first, last - first + 1));
  }
  if (keys.empty())
    return make_error(ec::invalid_request,
                      "the API key file '" + path + "' holds no key");
  return of(keys);
}

api_keys api_keys::of(const std::vector<std::string>& keys) {
  api_keys result;
  for (auto& key : keys)
    result.digests_.push_back(sha256(key));
  return result;
}

bool api_keys::allows(std::string_view key) const {
  if (digests_.empty())
    return true;
  // Digests have one length, so each comparison takes the same time, and
  // every key is compared: no early exit tells which one matched.
  auto digest = sha256(key);
  bool found = false;
  for (auto& known : digests_)
    found |= constant_time_equal(known, digest);
  return found;
}

bool api_keys::allows_header(std::string_view authorization) const {
  if (digests_.empty())
    return true;
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.substr(0, scheme.size()) != scheme)
    return false;
  return allows(authorization.substr(scheme.size()));
}

} // namespace tlm
