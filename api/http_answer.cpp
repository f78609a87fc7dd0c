#include "api/http_answer.hpp"

#include "api/protocol.hpp"

namespace tlm {

nlohmann::json object_body(const std::string& body, caf::error& failed) {
  using json = nlohmann::json;
  if (body.find_first_not_of(" \t\r\n") == std::string::npos)
    return json::object();
  if (!nesting_ok(body)) {
    failed = make_error(ec::invalid_request,
                        "the body nests deeper than "
                          + std::to_string(max_message_depth) + " levels");
    return json::object();
  }
  // nlohmann's parser takes a NUL byte for the end of the input.
  if (body.find('\0') != std::string::npos) {
    failed = make_error(ec::invalid_request,
                        "the body must not contain a NUL byte");
    return json::object();
  }
  auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    failed = make_error(ec::invalid_request, "the body is not valid JSON");
  else if (!parsed.is_object())
    failed = make_error(ec::invalid_request, "the body must be a JSON object");
  return parsed;
}

http_answer failure_answer(const caf::error& err) {
  http_answer out;
  out.status = http_status(code_of(err));
  out.body = render_failure(std::nullopt, err);
  return out;
}

} // namespace tlm
