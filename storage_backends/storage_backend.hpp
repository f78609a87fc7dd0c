#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "core/lease.hpp"
#include "storage_backends/shared_storage.hpp"

namespace tlm {

/// Pages are bounded in bytes as well as in count: a page of large leases
/// would otherwise cost tens of megabytes per call (a `list` of 1000
/// leases of 64 KiB), several at once hundreds.
constexpr size_t max_list_page_bytes = 1024 * 1024;
constexpr size_t max_load_page_bytes = 32 * 1024 * 1024;

/// The bytes a lease takes in a page, near enough for the bound.
inline size_t page_bytes(const lease& x) {
  return 128 + x.id.size() + x.backend.size() + x.backend_id.size()
         + x.value.size() + x.last_error.size() + x.scope.size()
         + client_data_bytes(x.meta, x.description, x.tags);
}

/// A `list` page from rows read one more than `limit` (that one only says
/// more exist): cut to `limit`, with the position to go on from when more
/// exist or the read stopped at its byte bound (`cut`).
inline lease_page list_page(std::vector<lease> rows, size_t limit, bool cut) {
  lease_page page;
  page.leases = std::move(rows);
  if (page.leases.size() > limit) {
    page.leases.resize(limit);
    cut = true;
  }
  if (cut && !page.leases.empty())
    page.next_after = page.leases.back().id;
  return page;
}

/// A `load` page from up to `max` rows: a full page, or one cut at its
/// byte bound, may have more after it.
inline lease_page load_page(std::vector<lease> rows, size_t max, bool cut) {
  lease_page page;
  page.leases = std::move(rows);
  if ((cut || page.leases.size() == max) && !page.leases.empty())
    page.next_after = page.leases.back().id;
  return page;
}

/// One change to the stored leases or jobs: a save (insert or replace) or a
/// removal (only the id is used).
struct storage_write {
  enum kind_t { save, remove, save_job, remove_job } kind;
  lease record;
  revoke_job job = {};
};

/// A place to keep leases (mirrors Ockam's StorageService). A plain class:
/// `storage_actor` wraps it and batches writes (group commit).
class storage_backend {
public:
  virtual ~storage_backend() = default;

  /// True when calls wait on I/O; the actor then runs detached.
  virtual bool blocking() const = 0;

  /// True when opening created the store, empty, where none was: the
  /// daemon says so, since a mistyped path otherwise looks like a store
  /// without leases. A memory store is new by nature and says false.
  virtual bool created_new() const {
    return false;
  }

  /// The store's side for several instances at once, or null when only
  /// one instance may use it (memory, SQLite).
  virtual shared_storage* shared() {
    return nullptr;
  }

  /// Applies every write or none, durably, before returning.
  virtual caf::error apply(const std::vector<storage_write>& batch) = 0;

  /// Reads one lease (`not_found` when absent).
  virtual caf::expected<lease> get(const std::string& id) = 0;

  /// Up to `max` leases after a position (all states, also expired ones:
  /// the start-up load revokes those), at most `max_load_page_bytes` of
  /// them but at least one.
  virtual caf::expected<lease_page> load(const std::string& after,
                                         uint32_t max) = 0;

  /// Every stored bulk revocation job.
  virtual caf::expected<std::vector<revoke_job>> load_jobs() = 0;

  /// One page of leases matching the filter, at most `filter.limit` and
  /// `max_list_page_bytes` of them but at least one. Pages follow one
  /// stable order, so paging returns every lease present throughout once.
  virtual caf::expected<lease_page> list(const lease_filter& filter) = 0;
};

} // namespace tlm
