#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "cloud_backends/cloud_backend.hpp"

namespace tlm {

/// Builds the backend of a config's `type` from its JSON settings, which
/// the backend validates (an error names the offending key).
caf::expected<std::shared_ptr<cloud_backend>>
make_cloud_backend(const std::string& name, const nlohmann::json& settings);

/// Every `type` name the registry knows.
std::vector<std::string> cloud_backend_types();

} // namespace tlm
