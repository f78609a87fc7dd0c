#pragma once

#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "actors/interfaces.hpp"
#include "storage_backends/storage_backend.hpp"

namespace tlm {

/// Builds the storage named by a spec: `memory`, `sqlite:PATH`, a
/// PostgreSQL URI (`postgresql://` or `postgres://`) or `postgres:` and a
/// libpq key=value string. `password_file` (PostgreSQL only) holds the
/// password on its first line.
caf::expected<std::unique_ptr<storage_backend>>
make_storage_backend(const std::string& spec,
                     const std::string& password_file = {});

/// Wraps a backend in a `storage_actor` that drains every write already in
/// its mailbox into one transaction before answering any of them: one
/// commit (one fsync) per batch, not per request.
storage_actor spawn_storage_actor(caf::actor_system& sys,
                                  std::unique_ptr<storage_backend> backend);

} // namespace tlm
