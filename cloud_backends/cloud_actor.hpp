#pragma once

#include <memory>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Wraps a backend in a `cloud_actor`; blocking backends get a thread.
cloud_actor spawn_cloud_actor(caf::actor_system& sys,
                              std::shared_ptr<cloud_backend> backend);

} // namespace tlm
