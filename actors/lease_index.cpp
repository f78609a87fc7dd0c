#include "actors/lease_index.hpp"

namespace tlm {

lease_index::slot* lease_index::find(std::string_view id) {
  auto key = lease_key::of(id);
  return key ? find(*key) : nullptr;
}

lease_index::slot* lease_index::find(const lease_key& key) {
  auto i = leases_.find(key);
  return i == leases_.end() ? nullptr : &*i;
}

lease_index::slot& lease_index::insert(const lease_key& key,
                                       packed_lease record, lease_phase phase) {
  auto [i, added] = leases_.try_emplace(key);
  if (!added)
    tally(i->second, false);
  i->second.record = std::move(record);
  i->second.phase = phase;
  i->second.record.state = stored_state(phase);
  tally(i->second, true);
  return *i;
}

std::optional<lease_entry> lease_index::erase(const lease_key& key) {
  auto i = leases_.find(key);
  if (i == leases_.end())
    return std::nullopt;
  tally(i->second, false);
  auto entry = std::move(i->second);
  leases_.erase(i);
  return entry;
}

void lease_index::set_phase(slot& s, lease_phase phase) {
  tally(s.second, false);
  s.second.phase = phase;
  s.second.record.state = stored_state(phase);
  tally(s.second, true);
}

void lease_index::record_failure(slot& s, std::string_view last_error,
                                 bool counts) {
  tally(s.second, false);
  if (counts)
    ++s.second.record.attempts;
  s.second.record.set_last_error(last_error);
  tally(s.second, true);
}

void lease_index::update(slot& s, const lease& updated) {
  tally(s.second, false);
  s.second.record = packed_lease{updated};
  s.second.record.state = stored_state(s.second.phase);
  tally(s.second, true);
}

void lease_index::tally(const lease_entry& e, bool add) {
  auto& n = by_phase_[static_cast<size_t>(e.phase)];
  n = add ? n + 1 : n - 1;
  uint64_t trouble_count::*counter = nullptr;
  if (given_up(e.phase))
    counter = &trouble_count::irrevocable;
  else if (e.phase != lease_phase::active && !e.record.last_error().empty())
    counter = &trouble_count::retrying;
  if (counter == nullptr)
    return;
  auto backend = e.record.backend();
  auto i = trouble_.find(backend);
  if (i == trouble_.end())
    i = trouble_.emplace(std::string{backend}, trouble_count{}).first;
  auto& m = i->second.*counter;
  m = add ? m + 1 : m - 1;
}

} // namespace tlm
