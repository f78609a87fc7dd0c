#include "api/token_server_routes.hpp"

#include "core/log.hpp"
#include "core/secrets.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

http_answer json_answer(std::string body) {
  http_answer out;
  out.body = std::move(body);
  return out;
}

/// The reply of a call to the core as token_server's answer: `ok` renders
/// a success, any failure is our failure object with its status.
template <class Ok>
http_answer answer_of(const api_reply& reply, Ok ok) {
  if (reply.code != ec::none) {
    http_answer out;
    out.status = http_status(reply.code);
    out.body = reply.body;
    return out;
  }
  return ok(json::parse(reply.body));
}

http_answer accepted() {
  http_answer out;
  out.status = 202;
  out.content_type = "text/plain; charset=utf-8";
  return out;
}

class token_server_routes {
public:
  token_server_routes(dispatcher& d, token_server_settings s)
    : disp_(d), settings_(std::move(s)) {
    // "/" and "/ts/" split into empty segments at their ends.
    for (auto& seg : parse_target(settings_.prefix).segments)
      if (!seg.empty())
        prefix_.push_back(seg);
  }

  /// Its paths: `token` and (when enabled) `dump` under the prefix.
  bool owns(const http_target& target) const {
    auto& segs = target.segments;
    if (segs.size() != prefix_.size() + 1
        || !std::equal(prefix_.begin(), prefix_.end(), segs.begin()))
      return false;
    auto& last = segs.back();
    return last == "token" || (last == "dump" && settings_.dump);
  }

  http_answer serve(const http_call& call) {
    bool dump = call.target.segments.back() == "dump";
    if (!call.api_key_ok)
      return failure_answer(make_error(
        ec::unauthorized, "send the header 'Authorization: Bearer <api key>'"));
    if (!call.target.query.empty())
      return failure_answer(make_error(
        ec::invalid_request, "token_server's routes take no query parameters"));
    if (dump)
      return call.method == "HEAD" ? dump_leases() : not_allowed("HEAD");
    if (call.method == "POST")
      return create(call.body);
    if (call.method == "PUT")
      return update(call.body);
    if (call.method == "DELETE")
      return remove(call.body);
    return not_allowed("POST, PUT, DELETE");
  }

private:
  static http_answer not_allowed(const char* methods) {
    auto out = failure_answer(make_error(
      ec::invalid_request, std::string{"this route takes only "} + methods));
    out.status = 405;
    out.allow = methods;
    return out;
  }

  http_answer create(const std::string& body) {
    auto reply = disp_.call_and_wait(
      parse_token_create(body, settings_.lifetime_ms));
    return answer_of(reply, [](const json& r) {
      http_answer out;
      out.body = r["lease"].value("value", "");
      out.content_type = "text/plain; charset=utf-8";
      return out;
    });
  }

  http_answer update(const std::string& body) {
    auto reply = disp_.call_and_wait(parse_token_update(body));
    if (reply.code == ec::invalid_token)
      return json_answer(token_invalid_reply);
    return answer_of(reply, [](const json& r) {
      return json_answer(render_token_ok(r["lease"]));
    });
  }

  /// Revokes the lease whose value the token is; a token that works no
  /// more is gone already, which is what the client asks (202, as
  /// token_server answers).
  http_answer remove(const std::string& body) {
    auto token = parse_token_remove(body);
    if (!token)
      return failure_answer(token.error());
    auto id = lease_id_of_token(*token);
    if (id.empty())
      return accepted();
    auto got = disp_.call_and_wait(
      parse_message(json{{"action", "get"}, {"token_id", id}}));
    if (got.code != ec::none)
      return accepted();
    auto value = json::parse(got.body)["lease"].value("value", "");
    if (!constant_time_equal(value, *token))
      return accepted();
    auto revoked = disp_.call_and_wait(
      parse_message(json{{"action", "revoke"}, {"token_id", id}}));
    return answer_of(revoked, [](const json&) { return accepted(); });
  }

  /// Logs every lease made here, a page at a time, never a token.
  http_answer dump_leases() {
    json message{
      {"action", "list"}, {"tag", token_server_tag}, {"limit", 1000}};
    size_t count = 0;
    for (;;) {
      auto page = disp_.call_and_wait(parse_message(message));
      if (page.code != ec::none)
        return answer_of(page, [](const json&) { return accepted(); });
      auto doc = json::parse(page.body);
      for (auto& lease : doc["leases"]) {
        log_line("info", "token_server dump: " + token_dump_line(lease));
        ++count;
      }
      if (!doc["next_cursor"].is_string())
        break;
      message["cursor"] = doc["next_cursor"];
    }
    log_line("info", "token_server dump: " + std::to_string(count) + " tokens");
    return accepted();
  }

  dispatcher& disp_;
  token_server_settings settings_;
  std::vector<std::string> prefix_;
};

} // namespace

http_surface token_server_surface(dispatcher& d, token_server_settings s) {
  auto routes = std::make_shared<token_server_routes>(d, std::move(s));
  return {[routes](const http_target& t) { return routes->owns(t); },
          [routes](const http_call& call) { return routes->serve(call); }};
}

} // namespace tlm
