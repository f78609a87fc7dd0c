#include "tlm/lease_cache.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tlm/atomic_file.hpp"
#include "wire.hpp"

namespace tlm::inline client_api {

namespace {

failure cache_failure(const std::string& what, const std::string& path) {
  return {errc::cache_error, what + " " + path + ": " + std::strerror(errno)};
}

} // namespace

lease_cache::lease_cache(std::string path) : path_(std::move(path)) {
}

lease_cache::~lease_cache() {
  unlock();
}

result<done> lease_cache::lock() {
  if (lock_fd_ >= 0)
    return done{};
  auto lock_path = path_ + ".lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return cache_failure("cannot open the cache lock file", lock_path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      auto err = cache_failure("cannot lock", lock_path);
      ::close(fd);
      return err;
    }
  }
  lock_fd_ = fd;
  return done{};
}

void lease_cache::unlock() {
  if (lock_fd_ < 0)
    return;
  ::flock(lock_fd_, LOCK_UN);
  ::close(lock_fd_);
  lock_fd_ = -1;
}

result<std::optional<lease>> lease_cache::load() const {
  std::ifstream in(path_);
  if (!in) {
    if (errno == ENOENT)
      return std::optional<lease>{};
    return cache_failure("cannot read the lease cache", path_);
  }
  std::stringstream text;
  text << in.rdbuf();
  auto j = wire::json::parse(text.str(), nullptr, false);
  auto x = wire::lease_from_json(j);
  if (!x || x->value.empty())
    return failure{errc::cache_error,
                   "the lease cache " + path_
                     + " does not hold a lease with a value; remove it to "
                       "start afresh"};
  return std::optional<lease>{std::move(x.value())};
}

result<done> lease_cache::store(const lease& x) const {
  return write_file_atomically(path_, wire::lease_to_json(x).dump() + "\n");
}

result<done> lease_cache::forget(const std::string& lease_id) const {
  auto cached = load();
  if (!cached || !cached.value() || cached.value()->id != lease_id)
    return done{};
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
    return cache_failure("cannot remove the lease cache", path_);
  return done{};
}

} // namespace tlm::inline client_api
