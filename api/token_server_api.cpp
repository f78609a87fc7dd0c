#include "api/token_server_api.hpp"

#include <algorithm>
#include <initializer_list>

#include "api/http_answer.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

/// The body as an object with only `allowed` fields, or why not.
caf::expected<json>
token_body(const std::string& body, const char* route,
           std::initializer_list<std::string_view> allowed) {
  caf::error failed;
  auto doc = object_body(body, failed);
  if (failed)
    return failed;
  for (auto& [key, _] : doc.items())
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (auto name : allowed)
        list += (list.empty() ? "" : ", ") + std::string{name};
      return make_error(ec::invalid_request,
                        "unknown field '" + key.substr(0, 64) + "': " + route
                          + " takes " + list);
    }
  return doc;
}

/// `token`: required, a non-empty string.
caf::error read_token(const json& doc, const char* route, std::string& out) {
  auto i = doc.find("token");
  if (i == doc.end() || !i->is_string()
      || i->get_ref<const std::string&>().empty())
    return make_error(ec::invalid_request,
                      std::string{route}
                        + " needs token: the token as a non-empty string");
  out = i->get<std::string>();
  return caf::none;
}

api_request refused(caf::error err) {
  api_request out;
  out.error = std::move(err);
  return out;
}

} // namespace

api_request parse_token_create(const std::string& body, int64_t lifetime_ms) {
  auto doc = token_body(body, "POST token", {"meta"});
  if (!doc)
    return refused(std::move(doc.error()));
  auto meta = doc->find("meta");
  if (meta == doc->end() || !meta->is_object())
    return refused(
      make_error(ec::invalid_request, "POST token needs meta: a JSON object"));
  return parse_message(json{{"action", "create"},
                            {"backend", token_server_backend},
                            {"ttl", lifetime_ms},
                            {"tags", {token_server_tag}},
                            {"meta", *meta}});
}

api_request parse_token_update(const std::string& body) {
  auto doc = token_body(body, "PUT token", {"token", "meta"});
  if (!doc)
    return refused(std::move(doc.error()));
  std::string token;
  if (auto err = read_token(*doc, "PUT token", token))
    return refused(std::move(err));
  json message{{"action", "exchange"},
               {"backend", token_server_backend},
               {"token", std::move(token)}};
  // token_server's clients send no meta, or null, to keep it as it is.
  if (auto meta = doc->find("meta"); meta != doc->end() && !meta->is_null())
    message["meta"] = *meta;
  return parse_message(message);
}

caf::expected<std::string> parse_token_remove(const std::string& body) {
  auto doc = token_body(body, "DELETE token", {"token"});
  if (!doc)
    return std::move(doc.error());
  std::string token;
  if (auto err = read_token(*doc, "DELETE token", token))
    return err;
  return token;
}

std::string lease_id_of_token(std::string_view token) {
  auto dot = token.find('.');
  return dot == std::string_view::npos ? std::string{}
                                       : std::string{token.substr(0, dot)};
}

std::string render_token_ok(const json& lease) {
  // token_server writes its fields in this order: token, then meta.
  auto text = [](const json& x) {
    return x.dump(-1, ' ', false, json::error_handler_t::replace);
  };
  return R"({"Ok":{"token":)" + text(lease.value("value", "")) + R"(,"meta":)"
         + text(lease.value("meta", json::object())) + "}}";
}

std::string token_dump_line(const json& lease) {
  return json{{"expires", lease.value("expires", "")},
              {"meta", lease.value("meta", json::object())}}
    .dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace tlm
