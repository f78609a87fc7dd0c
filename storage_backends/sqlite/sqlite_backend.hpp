#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "storage_backends/storage_backend.hpp"

namespace tlm {

/// Leases in a SQLite file (WAL, synchronous=FULL: a committed batch
/// survives a crash and a power loss). Creates the file, never its folder,
/// and refuses a database another process holds (a lock on `PATH.lock`).
caf::expected<std::unique_ptr<storage_backend>>
make_sqlite_backend(const std::string& path);

} // namespace tlm
