#pragma once

// What `tlm` prints: aligned tables for people, JSON for scripts.

#include <ostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "tlm/lease.hpp"

namespace tlm::inline client_api::cli {

/// A lease as the protocol's JSON object (with its value when it has one).
nlohmann::json lease_json(const lease& x);

/// One lease as `field  value` lines; the value only when `with_value`.
void print_lease(std::ostream& out, const lease& x, bool with_value);

/// Leases as a table with a header (never with values).
void print_lease_table(std::ostream& out, const std::vector<lease>& leases);

/// A job's progress as `field  value` lines.
void print_job(std::ostream& out, const nlohmann::json& job);

/// Health: status, counts, and a line per backend.
void print_health(std::ostream& out, const nlohmann::json& health);

/// "in 59 s", "2 min ago": how far `t` is from now.
std::string relative(wall_time t, wall_time now);

} // namespace tlm::inline client_api::cli
