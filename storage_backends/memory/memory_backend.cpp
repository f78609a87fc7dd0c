#include "storage_backends/memory/memory_backend.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "core/error.hpp"
#include "core/lease_key.hpp"
#include "core/packed_lease.hpp"

namespace tlm {

namespace {

bool in_window(const packed_lease& x, const state_window& w) {
  record_state state;
  return parse_record_state(w.state, state) && x.state == state
         && x.expires_ms >= w.min_expires_ms
         && x.expires_ms <= w.max_expires_ms;
}

bool matches(const packed_lease& x, const lease_filter& f) {
  if (!f.backend.empty() && x.backend() != f.backend)
    return false;
  if (!f.tag.empty() && !x.has_tag(f.tag))
    return false;
  return std::any_of(f.windows.begin(), f.windows.end(),
                     [&](const state_window& w) { return in_window(x, w); });
}

/// Leases by id, packed as the manager keeps them, plus their order of
/// first save. Positions for paging are sequence numbers: new leases
/// append at the end of the order (O(1) with a hint), where an id-ordered
/// tree would pay string compares per insert.
class memory_backend : public storage_backend {
public:
  memory_backend() {
    by_id_.reserve(1 << 21); // a rehash of a big table stalls all writes
  }

  bool blocking() const override {
    return false;
  }

  caf::error apply(const std::vector<storage_write>& batch) override {
    // Every write or none: check before changing anything. Records are
    // kept packed, which holds lease ids and known states only.
    record_state state;
    for (auto& w : batch) {
      if (w.kind != storage_write::save && w.kind != storage_write::remove)
        continue;
      if (!lease_key::of(w.record.id))
        return make_error(ec::storage_error, "'" + w.record.id.substr(0, 64)
                                               + "' is not a lease id");
      if (w.kind == storage_write::save
          && !parse_record_state(w.record.state, state))
        return make_error(ec::storage_error, "'" + w.record.state.substr(0, 32)
                                               + "' is not a lease state");
    }
    for (auto& w : batch) {
      if (w.kind == storage_write::save_job) {
        jobs_[w.job.id] = w.job;
      } else if (w.kind == storage_write::remove_job) {
        jobs_.erase(w.job.id);
      } else if (w.kind == storage_write::save) {
        auto [i, added] = by_id_.try_emplace(*lease_key::of(w.record.id));
        i->second.record = packed_lease{w.record};
        if (added) {
          i->second.seq = ++last_seq_;
          order_.emplace_hint(order_.end(), last_seq_, &i->first);
        }
      } else if (auto i = by_id_.find(*lease_key::of(w.record.id));
                 i != by_id_.end()) {
        order_.erase(i->second.seq);
        by_id_.erase(i);
      }
    }
    return caf::none;
  }

  caf::expected<lease> get(const std::string& id) override {
    auto key = lease_key::of(id);
    auto i = key ? by_id_.find(*key) : by_id_.end();
    if (i == by_id_.end())
      return make_error(ec::not_found,
                        "no stored lease has the id '" + id + "'");
    return i->second.record.unpack(id);
  }

  caf::expected<lease_page> load(const std::string& after,
                                 uint32_t max) override {
    return page(after, max, max_load_page_bytes,
                [](const packed_lease&) { return true; });
  }

  caf::expected<std::vector<revoke_job>> load_jobs() override {
    std::vector<revoke_job> result;
    for (auto& [_, job] : jobs_)
      result.push_back(job);
    return result;
  }

  caf::expected<lease_page> list(const lease_filter& filter) override {
    return page(filter.after, filter.limit, max_list_page_bytes,
                [&](const packed_lease& x) { return matches(x, filter); });
  }

private:
  struct entry {
    uint64_t seq = 0;
    packed_lease record;
  };

  template <class Predicate>
  caf::expected<lease_page> page(const std::string& after, uint32_t max,
                                 size_t max_bytes, Predicate keep) {
    uint64_t start = 0;
    if (!after.empty()) {
      auto parsed = std::strtoull(after.c_str(), nullptr, 10);
      if (after.find_first_not_of("0123456789") != std::string::npos)
        return make_error(ec::invalid_request,
                          "cursor is not one this server issued");
      start = parsed;
    }
    lease_page result;
    uint64_t last = 0;
    size_t bytes = 0;
    for (auto i = order_.upper_bound(start); i != order_.end(); ++i) {
      auto& record = by_id_.find(*i->second)->second.record;
      if (!keep(record))
        continue;
      auto x = record.unpack(i->second->str());
      bytes += page_bytes(x);
      if (result.leases.size() == max
          || (bytes > max_bytes && !result.leases.empty())) {
        result.next_after = std::to_string(last);
        break;
      }
      result.leases.push_back(std::move(x));
      last = i->first;
    }
    return result;
  }

  std::unordered_map<lease_key, entry, lease_key_hash> by_id_;
  /// Keys point into `by_id_`, whose nodes never move.
  std::map<uint64_t, const lease_key*> order_;
  uint64_t last_seq_ = 0;
  std::map<std::string, revoke_job> jobs_;
};

} // namespace

std::unique_ptr<storage_backend> make_memory_backend() {
  return std::make_unique<memory_backend>();
}

} // namespace tlm
