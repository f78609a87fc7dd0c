#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "actors/gateway.hpp"
#include "actors/interfaces.hpp"
#include "api/api_keys.hpp"
#include "api/protocol.hpp"

namespace tlm {

/// A reply ready to send: the JSON text and the protocol code behind it.
struct api_reply {
  std::string body;
  ec code = ec::none;
};

/// Turns parsed requests into lease manager calls and their replies into
/// protocol text. Shared by the TCP and HTTP servers.
class dispatcher {
public:
  /// `timeout` bounds how long `call_and_wait` blocks a thread of ours;
  /// the manager itself always answers.
  dispatcher(gateway& gw, lease_manager_actor manager, const api_keys& keys,
             std::chrono::milliseconds timeout);

  /// Runs a request and calls `done` exactly once, on some other thread or
  /// right away. `auth` answers whether its key is valid. Requests of one
  /// `lane` (e.g. one TCP connection) reach the manager in call order.
  void call(api_request req, std::function<void(api_reply)> done,
            size_t lane = next_lane());

  /// A fresh lane number.
  static size_t next_lane();

  /// `call`, waiting for the reply (for threads that may block).
  api_reply call_and_wait(api_request req, size_t lane = next_lane());

  /// Requests whose reply has not been produced yet.
  size_t in_flight() const {
    return in_flight_.load();
  }

  const api_keys& keys() const {
    return keys_;
  }

  /// A failure reply, e.g. for a transport-level problem.
  static api_reply failure(const std::optional<nlohmann::json>& request_id,
                           const caf::error& err);

private:
  /// Where a reply goes: the request id it echoes and who waits for it.
  struct reply_to {
    std::optional<nlohmann::json> request_id;
    std::function<void(api_reply)> done;
  };

  using reply_ptr = std::shared_ptr<reply_to>;

  /// Sends `xs` to the manager on `lane`; `render` turns its answer into
  /// the reply text.
  template <class... Results, class Render, class... Ts>
  void ask(reply_ptr to, size_t lane, Render render, Ts... xs);

  // -- one function per action ------------------------------------------------

  void run(create_cmd& cmd, reply_ptr to, size_t lane);
  void run(get_cmd& cmd, reply_ptr to, size_t lane);
  void run(revoke_cmd& cmd, reply_ptr to, size_t lane);
  void run(renew_cmd& cmd, reply_ptr to, size_t lane);
  void run(list_cmd& cmd, reply_ptr to, size_t lane);
  void run(exchange_cmd& cmd, reply_ptr to, size_t lane);
  void run(health_cmd& cmd, reply_ptr to, size_t lane);
  void run(auth_cmd& cmd, reply_ptr to, size_t lane);
  void run(revoke_prefix_cmd& cmd, reply_ptr to, size_t lane);
  void run(job_cmd& cmd, reply_ptr to, size_t lane);

  gateway& gateway_;
  lease_manager_actor manager_;
  const api_keys& keys_;
  std::chrono::milliseconds timeout_;
  std::atomic<size_t> in_flight_{0};
};

} // namespace tlm
