#include "actors/lease_loader.hpp"

#include <nlohmann/json.hpp>

#include "core/log.hpp"

namespace tlm {

lease_loader::outcome lease_loader::apply(std::vector<lease>& page,
                                          int64_t now_ms) {
  outcome result;
  for (auto& record : page) {
    if (auto problem = unreadable(record)) {
      ++quarantined_;
      log_line("error", "stored lease record '" + record.id.substr(0, 64)
                          + "' is quarantined: " + *problem);
      continue;
    }
    if (record.state == state_pending) {
      result.intents[record.backend].insert(record.id);
      continue;
    }
    result.tokens[record.backend].push_back(
      cloud_token{record.backend_id, record.value, "{}", record.id});
    add(record, now_ms);
  }
  return result;
}

void lease_loader::add(const lease& record, int64_t now_ms) {
  auto key = *lease_key::of(record.id);
  packed_lease packed{record};
  auto stored = packed.state;
  auto job = jobs_.job_of_loaded(packed);
  auto phase = loaded_phase(stored, record.expires_ms <= now_ms, job != 0);
  auto& slot = index_.insert(key, std::move(packed), phase);
  auto& entry = slot.second;
  entry.job = job;
  if (job != 0)
    jobs_.lease_added(job, given_up(phase));
  entry.due_ms = phase == lease_phase::active ? record.expires_ms : now_ms;
  schedule_.add(entry.due_ms, key);
}

std::optional<std::string> lease_loader::unreadable(const lease& x) {
  if (!lease_key::of(x.id))
    return "its id is not a lease id";
  if (x.backend.empty())
    return "it names no backend";
  if (x.state != state_active && x.state != state_pending
      && x.state != state_revoking && x.state != state_irrevocable)
    return "its state '" + x.state.substr(0, 32) + "' is unknown";
  if (x.state != state_pending && x.backend_id.empty())
    return "it has no backend id";
  auto meta = nlohmann::json::parse(x.meta, nullptr, false);
  if (!meta.is_object())
    return "its meta is not a JSON object";
  return std::nullopt;
}

} // namespace tlm
