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

// -- connection_registry ------------------------------------------------------

void connection_registry::cut_off(entry& e) {
  e.cut = true;
  try {
    e.socket.shutdownReceive();
  } catch (...) {
    // The client may have reset the connection already: it is over anyway.
  }
}

connection_registry::id
connection_registry::add(const Poco::Net::StreamSocket& socket, steady_time now,
                         int64_t read_timeout_ms) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto conn = next_++;
  entry e{socket, conn_phase::reading, now,
          now + std::chrono::milliseconds(read_timeout_ms), false};
  if (stopping_)
    cut_off(e);
  entries_.emplace(conn, std::move(e));
  return conn;
}

void connection_registry::remove(id conn) {
  std::lock_guard<std::mutex> guard{mtx_};
  entries_.erase(conn);
}

bool connection_registry::enter(id conn, conn_phase phase, steady_time now,
                                int64_t deadline_ms) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(conn);
  if (i == entries_.end())
    return false;
  auto& e = i->second;
  e.phase = phase;
  e.since = now;
  e.deadline = now + std::chrono::milliseconds(deadline_ms);
  return phase == conn_phase::busy || (!stopping_ && !e.cut);
}

bool connection_registry::cut(id conn) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(conn);
  return i != entries_.end() && i->second.cut;
}

size_t connection_registry::sweep(steady_time now, size_t waiting,
                                  int64_t shed_after_ms) {
  std::lock_guard<std::mutex> guard{mtx_};
  size_t cut = 0;
  // Candidates for shedding: (idle first, waiting longest first).
  std::vector<std::tuple<bool, steady_time, entry*>> candidates;
  auto shed_before = now - std::chrono::milliseconds(shed_after_ms);
  for (auto& [_, e] : entries_) {
    if (e.cut || e.phase == conn_phase::busy)
      continue;
    if (e.deadline <= now) {
      cut_off(e);
      ++cut;
    } else if (e.phase == conn_phase::idle || e.since <= shed_before) {
      candidates.emplace_back(e.phase != conn_phase::idle, e.since, &e);
    }
  }
  // A connection cut for its deadline frees a worker already.
  if (waiting <= cut || candidates.empty())
    return cut;
  auto n = std::min(waiting - cut, candidates.size());
  std::partial_sort(candidates.begin(), candidates.begin() + n,
                    candidates.end(), [](auto& a, auto& b) {
                      return std::tie(std::get<0>(a), std::get<1>(a))
                             < std::tie(std::get<0>(b), std::get<1>(b));
                    });
  for (size_t k = 0; k < n; ++k)
    cut_off(*std::get<2>(candidates[k]));
  return cut + n;
}

void connection_registry::stop() {
  std::lock_guard<std::mutex> guard{mtx_};
  stopping_ = true;
  for (auto& [_, e] : entries_)
    if (e.phase != conn_phase::busy && !e.cut)
      cut_off(e);
}

size_t connection_registry::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.size();
}

} // namespace tlm
