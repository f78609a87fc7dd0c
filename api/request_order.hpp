#pragma once

// The order guarantee of one TCP connection: every request sees the
// effects of every earlier request on the connection, pipelined or not.
// Requests that cannot affect each other still run at once: creates (each
// makes a lease nobody else knows yet) and actions on different leases.

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "api/protocol.hpp"

namespace tlm {

/// What a request may read or change.
struct request_scope {
  enum class kind : uint8_t {
    fresh, ///< Only a lease it makes (create).
    one,   ///< One lease or job, named by `key`.
    all,   ///< Anything (list, health, revoke_prefix, exchange).
  };
  kind what = kind::all;
  std::string key;
};

/// The scope of a parsed request.
request_scope scope_of(const command& cmd);

/// Decides, request by request in the connection's order, which earlier
/// requests of a batch must be answered before the next one starts.
class request_order {
public:
  /// The earlier requests (indexes in call order) that request `index`
  /// with `scope` must wait for; call once per request, in order.
  std::vector<size_t> admit(size_t index, const request_scope& scope);

private:
  /// The newest request of scope `all`: it waited for all before it.
  std::optional<size_t> barrier_;
  /// Requests since the barrier, and the newest of each key among them.
  std::vector<size_t> since_barrier_;
  std::unordered_map<std::string, size_t> newest_of_key_;
};

} // namespace tlm
