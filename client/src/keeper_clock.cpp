#include "tlm/keeper_clock.hpp"

#include <mutex>
#include <random>

namespace tlm::inline client_api {

namespace {

class system_clock_source : public keeper_clock {
public:
  system_clock_source() : engine_(std::random_device{}()) {
  }

  wall_time now() override {
    return wall_clock::now();
  }

  double uniform() override {
    std::lock_guard guard{mtx_};
    return std::uniform_real_distribution<double>{0.0, 1.0}(engine_);
  }

private:
  std::mutex mtx_;
  std::mt19937_64 engine_;
};

} // namespace

std::shared_ptr<keeper_clock> system_keeper_clock() {
  return std::make_shared<system_clock_source>();
}

} // namespace tlm::inline client_api
