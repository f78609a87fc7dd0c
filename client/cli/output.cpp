#include "cli/output.hpp"

#include <iomanip>

#include "wire.hpp"

namespace tlm::inline client_api::cli {

namespace {

using nlohmann::json;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (auto& item : items)
    out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "-" : out;
}

void field(std::ostream& out, const char* name, const std::string& value) {
  out << std::left << std::setw(12) << name << value << '\n';
}

/// A JSON value as text: strings without quotes.
std::string text_of(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

} // namespace

json lease_json(const lease& x) {
  return wire::lease_to_json(x);
}

std::string relative(wall_time t, wall_time now) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(t - now).count();
  auto mag = secs < 0 ? -secs : secs;
  std::string amount = mag < 120      ? std::to_string(mag) + " s"
                       : mag < 7200   ? std::to_string(mag / 60) + " min"
                       : mag < 172800 ? std::to_string(mag / 3600) + " h"
                                      : std::to_string(mag / 86400) + " d";
  return secs < 0 ? amount + " ago" : "in " + amount;
}

void print_lease(std::ostream& out, const lease& x, bool with_value) {
  auto now = wall_clock::now();
  field(out, "id", x.id);
  field(out, "backend", x.backend);
  field(out, "backend_id", x.backend_id);
  if (with_value && !x.value.empty())
    field(out, "value", x.value);
  field(out, "state", x.state);
  field(out, "ttl", std::to_string(x.ttl_ms) + " ms");
  field(out, "issued", wire::format_time(x.issued));
  field(out, "expires",
        wire::format_time(x.expires) + " (" + relative(x.expires, now) + ")");
  field(out, "renewable", x.renewable ? "yes" : "no");
  field(out, "tags", join(x.tags));
  if (x.meta != "{}")
    field(out, "meta", x.meta);
  if (!x.description.empty())
    field(out, "description", x.description);
  if (!x.last_error.empty())
    field(out, "last_error", x.last_error);
}

void print_lease_table(std::ostream& out, const std::vector<lease>& leases) {
  auto now = wall_clock::now();
  auto row = [&](const std::string& id, const std::string& backend,
                 const std::string& state, const std::string& expires,
                 const std::string& tags) {
    out << std::left << std::setw(24) << id << std::setw(12) << backend
        << std::setw(13) << state << std::setw(16) << expires << tags << '\n';
  };
  row("ID", "BACKEND", "STATE", "EXPIRES", "TAGS");
  for (auto& x : leases)
    row(x.id, x.backend, x.state, relative(x.expires, now), join(x.tags));
}

void print_job(std::ostream& out, const json& job) {
  for (auto key : {"job_id", "state", "backend", "tag", "total", "revoked",
                   "remaining", "irrevocable", "created", "finished"})
    if (job.contains(key) && !job[key].is_null() && job[key] != "")
      field(out, key, text_of(job[key]));
}

void print_health(std::ostream& out, const json& health) {
  for (auto key : {"status", "leases", "irrevocable", "quarantined"})
    if (health.contains(key))
      field(out, key, text_of(health[key]));
  if (!health.contains("backends"))
    return;
  out << '\n'
      << std::left << std::setw(16) << "BACKEND" << std::setw(9) << "STATUS"
      << std::setw(10) << "RETRYING" << std::setw(13) << "IRREVOCABLE"
      << "LAST ERROR\n";
  for (auto& [name, b] : health["backends"].items())
    out << std::setw(16) << name << std::setw(9) << b.value("status", "")
        << std::setw(10) << b.value("retrying", 0) << std::setw(13)
        << b.value("irrevocable", 0) << b.value("last_error", "-") << '\n';
}

} // namespace tlm::inline client_api::cli
