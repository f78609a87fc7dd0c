#include "actors/gateway.hpp"

#include <caf/all.hpp>

namespace tlm {

gateway::gateway(caf::actor_system& sys, size_t actors) {
  for (size_t i = 0; i < actors; ++i)
    actors_.push_back(sys.spawn([](caf::event_based_actor* self) {
      return caf::behavior{
        [self](gateway_job& job) { job.run(self); },
      };
    }));
}

void gateway::submit(gateway_job job) {
  auto& target =
    actors_[next_.fetch_add(1, std::memory_order_relaxed) % actors_.size()];
  caf::anon_send(target, std::move(job));
}

void gateway::stop() {
  for (auto& a : actors_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

} // namespace tlm
