#pragma once

// A lease kept in a file, so a restarted process or a sibling on the same
// host uses the same lease instead of creating one.

#include <optional>
#include <string>

#include "tlm/lease.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api {

/// The file holds one lease as JSON, with its value, mode 0600. Writes go
/// to a temporary file that is fsynced and renamed over it, so a reader
/// sees the old or the new lease, never half of one. Writers serialize on
/// an flock of `<path>.lock` (the data file itself is replaced on every
/// write, so it cannot carry the lock).
class lease_cache {
public:
  explicit lease_cache(std::string path);
  ~lease_cache();
  lease_cache(const lease_cache&) = delete;
  lease_cache& operator=(const lease_cache&) = delete;

  /// Takes the lock, waiting for another writer to finish.
  result<done> lock();
  void unlock();

  /// The cached lease; nothing when there is no file. A file that is not
  /// a lease is a `cache_error` naming the path.
  result<std::optional<lease>> load() const;

  /// Replaces the file atomically with `x`.
  result<done> store(const lease& x) const;

  /// Removes the file (when it still holds lease `lease_id`).
  result<done> forget(const std::string& lease_id) const;

  const std::string& path() const {
    return path_;
  }

private:
  std::string path_;
  int lock_fd_ = -1;
};

} // namespace tlm::inline client_api
