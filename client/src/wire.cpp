#include "wire.hpp"

#include <cstdio>
#include <ctime>

namespace tlm::inline client_api::wire {

namespace {

failure bad(const std::string& what) {
  return {errc::bad_reply, "the server's reply " + what};
}

/// A JSON object text, or the error naming `field`.
result<json> object_text(const std::string& text, const char* field) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return failure{errc::invalid_request,
                   std::string{field} + " must be a JSON object"};
  return j;
}

} // namespace

result<json> create_message(const create_request& req) {
  auto opts = object_text(req.options, "the create's options");
  auto meta = object_text(req.meta, "the create's meta");
  if (!opts || !meta)
    return opts ? meta.error() : opts.error();
  json msg{{"action", "create"}};
  if (!req.backend.empty())
    msg["backend"] = req.backend;
  if (req.ttl_ms)
    msg["ttl"] = *req.ttl_ms;
  if (!req.role.empty())
    msg["role"] = req.role;
  if (!opts->empty())
    msg["options"] = opts.value();
  if (req.renewable)
    msg["renewable"] = *req.renewable;
  if (!req.tags.empty())
    msg["tags"] = req.tags;
  if (!meta->empty())
    msg["meta"] = meta.value();
  if (!req.description.empty())
    msg["description"] = req.description;
  return msg;
}

json list_message(const list_filter& filter, const std::string& cursor) {
  json msg{{"action", "list"}};
  if (!filter.backend.empty())
    msg["backend"] = filter.backend;
  if (!filter.tag.empty())
    msg["tag"] = filter.tag;
  if (!filter.state.empty())
    msg["state"] = filter.state;
  if (filter.limit > 0)
    msg["limit"] = filter.limit;
  if (!cursor.empty())
    msg["cursor"] = cursor;
  return msg;
}

std::string format_time(wall_time t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              t.time_since_epoch())
              .count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

result<wall_time> parse_time(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  char z = 0;
  int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c",
                      &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                      &tm.tm_min, &tm.tm_sec, &ms, &z);
  if (n != 8 || z != 'Z')
    return bad("has a time that is not RFC 3339 UTC: '" + text + "'");
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  auto secs = timegm(&tm);
  return wall_time{std::chrono::seconds{secs} + std::chrono::milliseconds{ms}};
}

json lease_to_json(const lease& x) {
  json j{{"id", x.id},
         {"backend", x.backend},
         {"backend_id", x.backend_id},
         {"ttl", x.ttl_ms},
         {"issued", format_time(x.issued)},
         {"expires", format_time(x.expires)},
         {"renewable", x.renewable},
         {"tags", x.tags},
         {"meta", json::parse(x.meta, nullptr, false)},
         {"description", x.description},
         {"state", x.state}};
  if (!x.value.empty())
    j["value"] = x.value;
  if (!x.last_error.empty())
    j["last_error"] = x.last_error;
  return j;
}

result<lease> lease_from_json(const json& j) {
  if (!j.is_object())
    return bad("has a lease that is not an object");
  try {
    lease x;
    x.id = j.at("id").get<std::string>();
    x.backend = j.value("backend", "");
    x.backend_id = j.value("backend_id", "");
    x.value = j.value("value", "");
    x.ttl_ms = j.value("ttl", int64_t{0});
    auto issued = parse_time(j.at("issued").get<std::string>());
    auto expires = parse_time(j.at("expires").get<std::string>());
    if (!issued || !expires)
      return issued ? expires.error() : issued.error();
    x.issued = issued.value();
    x.expires = expires.value();
    x.renewable = j.value("renewable", false);
    x.tags = j.value("tags", std::vector<std::string>{});
    x.meta = j.contains("meta") ? j["meta"].dump() : "{}";
    x.description = j.value("description", "");
    x.state = j.value("state", "");
    x.last_error = j.value("last_error", "");
    return x;
  } catch (const json::exception& e) {
    return bad(std::string{"has a lease with a missing or mistyped field: "}
               + e.what());
  }
}

reply parse_reply(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return bad("is not a JSON object");
  return j;
}

std::optional<failure> failure_of(const json& j) {
  auto result = j.value("result", "");
  if (result == "success" || result == "accepted")
    return std::nullopt;
  if (result != "failure")
    return bad("has no result field");
  return failure{errc_from_string(j.value("error", "")),
                 j.value("message", "(the server gave no message)")};
}

namespace {

/// The failure of a transport error or a failure reply, if any.
std::optional<failure> failed(const reply& r) {
  if (!r)
    return r.error();
  return failure_of(r.value());
}

} // namespace

result<lease> lease_reply(const reply& r) {
  if (auto f = failed(r))
    return *f;
  if (!r->contains("lease"))
    return bad("has no lease");
  return lease_from_json(r->at("lease"));
}

result<renewal> renewal_reply(const reply& r) {
  auto x = lease_reply(r);
  if (!x)
    return x.error();
  return renewal{std::move(x.value()), r->value("capped", false)};
}

result<revoke_outcome> revoke_reply(const reply& r) {
  if (auto f = failed(r))
    return *f;
  bool confirmed = r->value("result", "") == "success";
  return revoke_outcome{confirmed, r->value("message", "")};
}

result<lease_page> page_reply(const reply& r) {
  if (auto f = failed(r))
    return *f;
  auto leases = r->find("leases");
  if (leases == r->end() || !leases->is_array())
    return bad("has no leases array");
  lease_page page;
  for (auto& item : *leases) {
    auto x = lease_from_json(item);
    if (!x)
      return x.error();
    page.leases.push_back(std::move(x.value()));
  }
  auto cursor = r->find("next_cursor");
  if (cursor != r->end() && cursor->is_string())
    page.next_cursor = cursor->get<std::string>();
  return page;
}

result<job> job_reply(const reply& r) {
  if (auto f = failed(r))
    return *f;
  auto j = r->find("job");
  if (j == r->end() || !j->is_object())
    return bad("has no job");
  job out;
  out.id = j->value("job_id", r->value("job_id", ""));
  out.state = j->value("state", "");
  out.total = j->value("total", int64_t{0});
  out.revoked = j->value("revoked", int64_t{0});
  out.remaining = j->value("remaining", int64_t{0});
  out.irrevocable = j->value("irrevocable", int64_t{0});
  out.json = j->dump();
  return out;
}

result<health> health_reply(const reply& r) {
  if (auto f = failed(r))
    return *f;
  health h;
  h.status = r->value("status", "");
  h.leases = r->value("leases", int64_t{0});
  h.irrevocable = r->value("irrevocable", int64_t{0});
  h.quarantined = r->value("quarantined", int64_t{0});
  h.json = r->dump();
  return h;
}

} // namespace tlm::inline client_api::wire
