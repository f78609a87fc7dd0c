#pragma once

#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Builds the built-in `local` backend: one-time tokens in memory, each
/// exchanged for a fresh one on use (the token_server idea). Settings:
/// `type` and `token_bytes` (32 to 128, default 32).
caf::expected<std::shared_ptr<cloud_backend>>
make_local_backend(const std::string& name, const nlohmann::json& settings);

} // namespace tlm
