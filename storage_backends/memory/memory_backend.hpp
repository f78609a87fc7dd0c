#pragma once

#include <memory>

#include "storage_backends/storage_backend.hpp"

namespace tlm {

/// Leases in an ordered map: fast, and gone when the process ends.
std::unique_ptr<storage_backend> make_memory_backend();

} // namespace tlm
