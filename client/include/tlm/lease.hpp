#pragma once

// What the protocol's actions take and return, as plain structs.
//
// The client's names live in the inline namespace tlm::client_api: users
// write tlm::lease, and the symbols never clash at link time with the
// server's own tlm::lease (core/lease.hpp) in a program that has both.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tlm::inline client_api {

using wall_clock = std::chrono::system_clock;
using wall_time = wall_clock::time_point;

/// A lease as the server shows it. `meta` is JSON text (an object).
struct lease {
  std::string id;
  std::string backend;
  std::string backend_id;
  std::string value; ///< empty where the server leaves it out (list)
  int64_t ttl_ms = 0;
  wall_time issued;
  wall_time expires;
  bool renewable = false;
  std::vector<std::string> tags;
  std::string meta = "{}";
  std::string description;
  std::string state;
  std::string last_error;
};

/// What a renew answers: the lease, and whether the total-life cap cut the
/// term short (then renewing again cannot extend it).
struct renewal {
  tlm::lease lease;
  bool capped = false;
};

/// A `create`. Empty strings and unset optionals are left out of the
/// request, so the server's defaults apply. `options` is a JSON object
/// text handed to the backend.
struct create_request {
  std::string backend;
  std::optional<int64_t> ttl_ms;
  std::string role;
  std::string options = "{}";
  std::optional<bool> renewable;
  std::vector<std::string> tags;
  std::string meta = "{}";
  std::string description;
};

/// The filters of a `list`; empty ones are left out.
struct list_filter {
  std::string backend;
  std::string tag;
  std::string state; ///< active, revoking or irrevocable
  int limit = 0;     ///< page size; 0: the server's default
};

/// One page of a `list`; `next_cursor` is empty on the last page.
struct lease_page {
  std::vector<lease> leases;
  std::string next_cursor;
};

/// What a revoke answers: `confirmed` once the backend confirmed it;
/// otherwise the lease is dead and its revocation is still being retried
/// (the protocol's `revocation_pending`).
struct revoke_outcome {
  bool confirmed = true;
  std::string message;
};

/// A `revoke_prefix` job. `json` is the server's job object as text.
struct job {
  std::string id;
  std::string state;
  int64_t total = 0;
  int64_t revoked = 0;
  int64_t remaining = 0;
  int64_t irrevocable = 0;
  std::string json;
};

/// What `health` answers. `json` is the whole reply body as text.
struct health {
  std::string status; ///< ok or degraded
  int64_t leases = 0;
  int64_t irrevocable = 0;
  int64_t quarantined = 0;
  std::string json;
};

} // namespace tlm::inline client_api
