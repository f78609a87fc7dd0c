#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "storage_backends/storage_backend.hpp"

namespace tlm {

/// Leases in a PostgreSQL database, for one tlmd at a time: `conninfo` is
/// any URI or key=value string libpq accepts, without a password (that
/// comes from `password_file`, when not empty, or libpq's PGPASSFILE).
/// Creates or upgrades the schema, and refuses a database another tlmd
/// holds (a session advisory lock). Calls fail with `storage_error` within
/// about 10 s when the server is gone, and reconnect on the next call.
caf::expected<std::unique_ptr<storage_backend>>
make_postgres_backend(const std::string& conninfo,
                      const std::string& password_file);

} // namespace tlm
