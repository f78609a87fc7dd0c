#pragma once

// Admission of revocations per backend: each backend has a lane with a
// limit of revocations in flight; due leases beyond it wait in the lane's
// queue, in the order they came due. An expiry storm never floods a
// backend, and a slow backend never delays another's revocations.

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/lease_key.hpp"

namespace tlm {

class revocation_lanes {
public:
  /// `default_limit`: the limit of a lane not set with `set_limit` (an
  /// in-process backend, or one no longer configured).
  explicit revocation_lanes(size_t default_limit = 1)
    : default_limit_(default_limit) {
  }

  void set_default_limit(size_t limit) {
    default_limit_ = limit;
  }

  void set_limit(const std::string& backend, size_t limit) {
    lane_of(backend).limit = limit;
  }

  /// Whether a revocation at `backend` may start now.
  bool has_room(std::string_view backend) {
    auto& lane = lane_of(backend);
    return lane.in_flight < lane.limit;
  }

  /// A revocation at `backend` is in flight.
  void started(std::string_view backend) {
    ++lane_of(backend).in_flight;
    ++in_flight_;
  }

  /// A revocation at `backend` ended: its slot is free.
  void finished(std::string_view backend) {
    --lane_of(backend).in_flight;
    --in_flight_;
  }

  /// Queues a due lease behind the others waiting for `backend`.
  void wait(std::string_view backend, const lease_key& key) {
    lane_of(backend).waiting.push_back(key);
  }

  /// The next waiting lease of `backend` if the lane has a free slot (the
  /// caller starts it, or drops it if it went stale meanwhile).
  std::optional<lease_key> next(std::string_view backend) {
    auto& lane = lane_of(backend);
    if (lane.in_flight >= lane.limit || lane.waiting.empty())
      return std::nullopt;
    auto key = lane.waiting.front();
    lane.waiting.pop_front();
    return key;
  }

  /// Revocations in flight at all backends.
  size_t in_flight() const {
    return in_flight_;
  }

  /// Leases waiting in `backend`'s lane.
  size_t waiting(std::string_view backend) {
    return lane_of(backend).waiting.size();
  }

private:
  struct lane {
    size_t in_flight = 0;
    size_t limit = 1;
    std::deque<lease_key> waiting;
  };

  lane& lane_of(std::string_view backend) {
    std::string name{backend};
    auto i = lanes_.find(name);
    if (i != lanes_.end())
      return i->second;
    auto& result = lanes_[name];
    result.limit = default_limit_;
    return result;
  }

  size_t default_limit_;
  size_t in_flight_ = 0;
  std::unordered_map<std::string, lane> lanes_;
};

} // namespace tlm
