#pragma once

// A client of tlmd: every action as a typed call, over TCP or HTTP.

#include <functional>
#include <future>
#include <memory>
#include <string>

#include "tlm/connection_options.hpp"
#include "tlm/lease.hpp"
#include "tlm/lease_pager.hpp"
#include "tlm/result.hpp"

namespace tlm::inline client_api {

namespace detail {
class transport;
} // namespace detail

/// Talks to one tlmd. Calls may come from any thread. Over TCP, calls are
/// pipelined on one connection and answered in order; over HTTP they run
/// one at a time on a keep-alive connection. A broken connection fails the
/// calls in flight with `connection_failed` (they are never resent, as a
/// create is not idempotent) and the next call connects again.
class client {
public:
  explicit client(connection_options opts);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  template <class T>
  using callback = std::function<void(result<T>)>;

  // -- asynchronous calls --------------------------------------------------
  // The callback runs on the client's I/O thread (or at once on the calling
  // thread when the call cannot be sent). It may call the client again,
  // but must not block long (it holds up the replies behind it) and must
  // not destroy the client.

  void create(const create_request& req, callback<lease> cb);
  void get(const std::string& lease_id, callback<lease> cb);
  /// `ttl_ms` 0: the lease's own ttl.
  void renew(const std::string& lease_id, int64_t ttl_ms, callback<renewal> cb);
  void revoke(const std::string& lease_id, bool force,
              callback<revoke_outcome> cb);
  /// One page; pass the previous page's `next_cursor` for the next one.
  void list(const list_filter& filter, const std::string& cursor,
            callback<lease_page> cb);
  /// `meta` is a JSON Merge Patch text for the lease's meta.
  void exchange(const std::string& token, const std::string& meta,
                callback<lease> cb);
  void revoke_prefix(const std::string& backend, const std::string& tag,
                     callback<tlm::job> cb);
  void job(const std::string& job_id, callback<tlm::job> cb);
  void health(callback<tlm::health> cb);

  // -- futures ---------------------------------------------------------------

  std::future<result<lease>> create_async(const create_request& req);
  std::future<result<lease>> get_async(const std::string& lease_id);
  std::future<result<renewal>> renew_async(const std::string& lease_id,
                                           int64_t ttl_ms = 0);
  std::future<result<revoke_outcome>> revoke_async(const std::string& lease_id,
                                                   bool force = false);
  std::future<result<lease_page>> list_async(const list_filter& filter,
                                             const std::string& cursor = {});
  std::future<result<lease>> exchange_async(const std::string& token,
                                            const std::string& meta = "{}");
  std::future<result<tlm::job>> revoke_prefix_async(const std::string& backend,
                                                    const std::string& tag);
  std::future<result<tlm::job>> job_async(const std::string& job_id);
  std::future<result<tlm::health>> health_async();

  // -- blocking calls: each waits for its future ------------------------------

  result<lease> create_lease(const create_request& req);
  result<lease> get_lease(const std::string& lease_id);
  result<renewal> renew_lease(const std::string& lease_id, int64_t ttl_ms = 0);
  result<revoke_outcome> revoke_lease(const std::string& lease_id,
                                      bool force = false);
  result<lease_page> list_page(const list_filter& filter,
                               const std::string& cursor = {});
  /// Every lease matching `filter`, page by page.
  lease_pager list_all(const list_filter& filter);
  result<lease> exchange_token(const std::string& token,
                               const std::string& meta = "{}");
  result<tlm::job> start_revoke_prefix(const std::string& backend,
                                       const std::string& tag);
  result<tlm::job> get_job(const std::string& job_id);
  result<tlm::health> get_health();

  const connection_options& options() const {
    return opts_;
  }

private:
  connection_options opts_;
  std::unique_ptr<detail::transport> transport_;
};

} // namespace tlm::inline client_api
