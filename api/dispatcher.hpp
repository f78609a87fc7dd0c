#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/interfaces.hpp"
#include "actors/manager_batch.hpp"
#include "api/api_keys.hpp"
#include "api/protocol.hpp"

namespace tlm {

/// A reply ready to send: the JSON text and the protocol code behind it.
struct api_reply {
  std::string body;
  ec code = ec::none;
};

/// The manager's answers to one batch, rendered into replies where the
/// caller likes (a front end's own thread, off the manager's).
class batch_outcome {
public:
  /// What rendering needs of each request.
  struct request_info;

  batch_outcome(std::shared_ptr<std::vector<request_info>> requests,
                std::vector<manager_outcome> outcomes);

  /// One reply a request, in request order.
  std::vector<api_reply> render() &&;

private:
  std::shared_ptr<std::vector<request_info>> requests_;
  std::vector<manager_outcome> outcomes_;
};

/// Turns parsed requests into lease manager calls and the outcomes into
/// protocol text. Shared by the TCP and HTTP servers. A batch reaches the
/// manager as one message and its outcomes come back as one.
class dispatcher {
public:
  /// `timeout` bounds how long `call_and_wait` blocks a thread of ours;
  /// the manager itself always answers.
  dispatcher(lease_manager_actor manager, const api_keys& keys,
             std::chrono::milliseconds timeout);

  /// Runs `reqs` in order of effect and calls `done` exactly once, on the
  /// manager's thread or right away (when no request needs the manager).
  /// Requests already failed (parse errors) and `auth` are answered here.
  void send(std::vector<api_request> reqs,
            std::function<void(batch_outcome)> done);

  /// One request; `done` gets its reply.
  void call(api_request req, std::function<void(api_reply)> done);

  /// `call`, waiting for the reply (for threads that may block).
  api_reply call_and_wait(api_request req);

  /// Requests whose outcome has not come back yet.
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
  lease_manager_actor manager_;
  const api_keys& keys_;
  std::chrono::milliseconds timeout_;
  std::atomic<size_t> in_flight_{0};
};

} // namespace tlm
