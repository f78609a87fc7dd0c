#include "actors/expiry_schedule.hpp"

namespace tlm {

void expiry_schedule::add(int64_t due_ms, const lease_key& key) {
  heap_.push(entry{due_ms, key});
}

std::optional<int64_t> expiry_schedule::earliest() const {
  if (heap_.empty())
    return std::nullopt;
  return heap_.top().due_ms;
}

std::optional<expiry_schedule::entry> expiry_schedule::pop_due(int64_t now_ms) {
  if (heap_.empty() || heap_.top().due_ms > now_ms)
    return std::nullopt;
  auto result = heap_.top();
  heap_.pop();
  return result;
}

void expiry_schedule::clear() {
  heap_ = {};
}

} // namespace tlm
