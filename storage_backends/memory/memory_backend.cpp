#include "storage_backends/memory/memory_backend.hpp"

#include <algorithm>
#include <map>

#include "actors/error.hpp"

namespace tlm {

namespace {

bool matches(const lease& x, const list_query& q) {
  return x.expires_ms > q.now_ms && (q.backend.empty() || x.backend == q.backend)
         && (q.tag.empty()
             || std::find(x.tags.begin(), x.tags.end(), q.tag) != x.tags.end());
}

class memory_backend : public storage_backend {
public:
  bool blocking() const override {
    return false;
  }

  caf::error apply(const std::vector<storage_write>& batch) override {
    for (auto& w : batch) {
      if (w.kind == storage_write::save)
        leases_[w.record.id] = w.record;
      else
        leases_.erase(w.record.id);
    }
    return caf::none;
  }

  caf::expected<lease> get(const std::string& id) override {
    auto i = leases_.find(id);
    if (i == leases_.end())
      return make_error(ec::not_found, "no stored lease has the id '" + id
                                         + "'");
    return i->second;
  }

  caf::expected<std::vector<lease>> load(const std::string& after_id,
                                         uint32_t max) override {
    std::vector<lease> result;
    for (auto i = leases_.upper_bound(after_id);
         i != leases_.end() && result.size() < max; ++i)
      result.push_back(i->second);
    return result;
  }

  caf::expected<lease_page> list(const list_query& query) override {
    lease_page page;
    for (auto i = leases_.upper_bound(query.after_id); i != leases_.end();
         ++i) {
      if (!matches(i->second, query))
        continue;
      if (page.leases.size() == query.limit) {
        page.next_after_id = page.leases.back().id;
        break;
      }
      page.leases.push_back(i->second);
    }
    return page;
  }

private:
  std::map<std::string, lease> leases_;
};

} // namespace

std::unique_ptr<storage_backend> make_memory_backend() {
  return std::make_unique<memory_backend>();
}

} // namespace tlm
