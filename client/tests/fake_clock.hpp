#pragma once

// A keeper_clock whose time moves only when a test says so, and whose
// random draws are scripted.

#include <deque>

#include "tlm/keeper_clock.hpp"

namespace tlm::test {

class fake_clock : public keeper_clock {
public:
  wall_time now() override {
    return now_;
  }
  double uniform() override {
    if (draws_.empty())
      return 0.5;
    auto u = draws_.front();
    draws_.pop_front();
    return u;
  }
  void advance(std::chrono::milliseconds d) {
    now_ += d;
  }
  void draw(double u) {
    draws_.push_back(u);
  }

private:
  wall_time now_ = wall_time{std::chrono::seconds{1'800'000'000}};
  std::deque<double> draws_;
};

} // namespace tlm::test
