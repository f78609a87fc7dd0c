#pragma once

#include <atomic>
#include <functional>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>

namespace tlm {

/// A piece of work that must run inside an actor, e.g. the daemon's own
/// `request` to the lease manager whose continuation hands the reply to
/// the main thread (the APIs send batches, api/dispatcher.hpp).
struct gateway_job {
  std::function<void(caf::event_based_actor*)> run;
};

/// The bridge from threads that are not actors (Poco's) into the actor
/// system: `submit` never blocks and needs no `scoped_actor`, which would
/// slow down with stale timeouts and hang the system's exit.
class gateway {
public:
  gateway(caf::actor_system& sys, size_t actors);

  /// Runs `job` on one of the gateway actors (round robin).
  void submit(gateway_job job);

  /// Stops the gateway actors.
  void stop();

private:
  std::vector<caf::actor> actors_;
  std::atomic<size_t> next_{0};
};

} // namespace tlm

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tlm::gateway_job)
