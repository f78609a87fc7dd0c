#include "api/http_guard.hpp"

#include <algorithm>
#include <tuple>

namespace tlm {

// -- peer_limiter -------------------------------------------------------------

bool peer_limiter::try_acquire(const std::string& peer, int64_t fd) {
  std::lock_guard<std::mutex> guard{mtx_};
  // A descriptor still counted belongs to a connection that ended without
  // being released (e.g. dropped at shutdown): the kernel reuses numbers.
  if (auto i = peer_of_.find(fd); i != peer_of_.end()) {
    if (--per_peer_[i->second] <= 0)
      per_peer_.erase(i->second);
    peer_of_.erase(i);
  }
  auto& n = per_peer_[peer];
  if (n >= max_) {
    if (n == 0)
      per_peer_.erase(peer);
    return false;
  }
  ++n;
  peer_of_.emplace(fd, peer);
  return true;
}

void peer_limiter::release(int64_t fd) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = peer_of_.find(fd);
  if (i == peer_of_.end())
    return;
  if (--per_peer_[i->second] <= 0)
    per_peer_.erase(i->second);
  peer_of_.erase(i);
}

int peer_limiter::count(const std::string& peer) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = per_peer_.find(peer);
  return i == per_peer_.end() ? 0 : i->second;
}

} // namespace tlm
