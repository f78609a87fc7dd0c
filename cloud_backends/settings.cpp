#include "cloud_backends/settings.hpp"

#include <fstream>

#include <Poco/Exception.h>
#include <Poco/URI.h>

#include "core/error.hpp"

namespace tlm {

settings_reader::settings_reader(std::string backend_name,
                                 const nlohmann::json& settings)
  : settings_reader(std::move(backend_name), settings, {"type"}) {
  // nop
}

settings_reader::settings_reader(std::string backend_name,
                                 const nlohmann::json& settings,
                                 std::set<std::string> implicit)
  : name_(std::move(backend_name)),
    settings_(settings),
    read_(std::move(implicit)) {
  // nop
}

bool settings_reader::has(const std::string& key) const {
  auto i = settings_.find(key);
  return i != settings_.end() && !i->is_null();
}

const nlohmann::json* settings_reader::find(const std::string& key) {
  read_.insert(key);
  auto i = settings_.find(key);
  return i == settings_.end() || i->is_null() ? nullptr : &*i;
}

void settings_reader::fail(const std::string& key, const std::string& problem) {
  if (!error_)
    error_ = make_error(ec::invalid_request, full_key(key) + " " + problem);
}

std::string settings_reader::required_string(const std::string& key) {
  auto* v = find(key);
  if (v == nullptr || !v->is_string() || v->get<std::string>().empty()) {
    fail(key, "is required and must be a non-empty string");
    return {};
  }
  return v->get<std::string>();
}

std::string settings_reader::optional_string(const std::string& key,
                                             std::string fallback) {
  auto* v = find(key);
  if (v == nullptr)
    return fallback;
  if (!v->is_string()) {
    fail(key, "must be a string");
    return fallback;
  }
  return v->get<std::string>();
}

int64_t settings_reader::optional_int(const std::string& key, int64_t fallback,
                                      int64_t min, int64_t max) {
  auto* v = find(key);
  if (v == nullptr)
    return fallback;
  if (!v->is_number_integer() || v->get<int64_t>() < min
      || v->get<int64_t>() > max) {
    fail(key, "must be an integer from " + std::to_string(min) + " to "
                + std::to_string(max));
    return fallback;
  }
  return v->get<int64_t>();
}

std::string settings_reader::http_url(const std::string& key) {
  auto url = required_string(key);
  if (url.empty())
    return {};
  try {
    Poco::URI uri(url);
    if ((uri.getScheme() == "http" || uri.getScheme() == "https")
        && !uri.getHost().empty())
      return url;
  } catch (const Poco::Exception&) {
    // reported below
  }
  fail(key, "must be an http:// or https:// URL (got '" + url + "')");
  return {};
}

std::chrono::milliseconds settings_reader::timeout(const std::string& key,
                                                   int64_t fallback_ms) {
  return std::chrono::milliseconds{optional_int(key, fallback_ms, 1, 600'000)};
}

std::string settings_reader::secret_file(const std::string& key) {
  auto path = required_string(key);
  if (path.empty())
    return {};
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    fail(key, "names '" + path + "', which cannot be read");
    return {};
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.pop_back();
  if (line.empty())
    fail(key, "names '" + path + "', whose first line is empty");
  return line;
}

nlohmann::json settings_reader::optional_json(const std::string& key,
                                              nlohmann::json fallback) {
  auto* v = find(key);
  return v == nullptr ? std::move(fallback) : *v;
}

bool settings_reader::optional_bool(const std::string& key, bool fallback) {
  auto* v = find(key);
  if (v == nullptr)
    return fallback;
  if (!v->is_boolean()) {
    fail(key, "must be true or false");
    return fallback;
  }
  return v->get<bool>();
}

std::vector<std::string>
settings_reader::optional_strings(const std::string& key,
                                  std::vector<std::string> fallback) {
  auto* v = find(key);
  if (v == nullptr)
    return fallback;
  std::vector<std::string> result;
  if (v->is_array())
    for (auto& item : *v)
      if (item.is_string() && !item.get<std::string>().empty())
        result.push_back(item.get<std::string>());
  if (!v->is_array() || result.size() != v->size()) {
    fail(key, "must be an array of non-empty strings");
    return fallback;
  }
  return result;
}

void settings_reader::section(
  const std::string& key, const nlohmann::json& value,
  const std::function<void(settings_reader&)>& read) {
  if (!value.is_object()) {
    fail(key, "must be a JSON object");
    return;
  }
  settings_reader inner{name_ + "." + key, value, {}};
  read(inner);
  if (auto err = inner.finish(); err && !error_)
    error_ = std::move(err);
}

caf::error settings_reader::finish() {
  if (error_)
    return error_;
  for (auto& [key, _] : settings_.items())
    if (read_.count(key) == 0)
      return make_error(ec::invalid_request,
                        full_key(key) + " is not a setting of this backend");
  return caf::none;
}

} // namespace tlm
