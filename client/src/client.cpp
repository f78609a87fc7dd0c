#include "tlm/client.hpp"

#include "transport.hpp"
#include "wire.hpp"

namespace tlm::inline client_api {

namespace {

using wire::json;

std::unique_ptr<detail::transport> make_transport(const connection_options& o) {
  if (o.tls.enabled)
    return detail::make_failing_transport(
      {errc::unsupported, "TLS is not supported yet: tlmd serves plain TCP "
                          "and HTTP only (TLS comes with issue 13); use a "
                          "tcp:// or http:// address"});
  if (o.transport == transport_kind::http)
    return detail::make_http_transport(o);
  return detail::make_tcp_transport(o);
}

/// Sends `msg` and converts its reply with `convert` for the callback.
template <class T, class Convert>
void call(detail::transport& t, const json& msg, Convert convert,
          client::callback<T> cb) {
  t.send(msg, [convert, cb = std::move(cb)](wire::reply r) { cb(convert(r)); });
}

/// The call's outcome as a future. The transport always answers (with a
/// timeout failure at the latest), so waiting on it never hangs.
template <class T, class Start>
std::future<result<T>> as_future(Start start) {
  auto promise = std::make_shared<std::promise<result<T>>>();
  auto fut = promise->get_future();
  start([promise](result<T> r) { promise->set_value(std::move(r)); });
  return fut;
}

} // namespace

client::client(connection_options opts)
  : opts_(std::move(opts)), transport_(make_transport(opts_)) {
}

client::~client() = default;

// -- asynchronous calls -------------------------------------------------------

void client::create(const create_request& req, callback<lease> cb) {
  auto msg = wire::create_message(req);
  if (!msg) {
    cb(msg.error());
    return;
  }
  call<lease>(*transport_, msg.value(), wire::lease_reply, std::move(cb));
}

void client::get(const std::string& lease_id, callback<lease> cb) {
  call<lease>(*transport_, {{"action", "get"}, {"token_id", lease_id}},
              wire::lease_reply, std::move(cb));
}

void client::renew(const std::string& lease_id, int64_t ttl_ms,
                   callback<renewal> cb) {
  json msg{{"action", "renew"}, {"token_id", lease_id}};
  if (ttl_ms > 0)
    msg["ttl"] = ttl_ms;
  call<renewal>(*transport_, msg, wire::renewal_reply, std::move(cb));
}

void client::revoke(const std::string& lease_id, bool force,
                    callback<revoke_outcome> cb) {
  json msg{{"action", "revoke"}, {"token_id", lease_id}};
  if (force)
    msg["force"] = true;
  call<revoke_outcome>(*transport_, msg, wire::revoke_reply, std::move(cb));
}

void client::list(const list_filter& filter, const std::string& cursor,
                  callback<lease_page> cb) {
  call<lease_page>(*transport_, wire::list_message(filter, cursor),
                   wire::page_reply, std::move(cb));
}

void client::exchange(const std::string& token, const std::string& meta,
                      callback<lease> cb) {
  json msg{{"action", "exchange"}, {"token", token}};
  auto patch = json::parse(meta.empty() ? "{}" : meta, nullptr, false);
  if (!patch.is_object()) {
    cb(failure{errc::invalid_request,
               "the exchange's meta must be a JSON object"});
    return;
  }
  if (!patch.empty())
    msg["meta"] = patch;
  call<lease>(*transport_, msg, wire::lease_reply, std::move(cb));
}

void client::revoke_prefix(const std::string& backend, const std::string& tag,
                           callback<tlm::job> cb) {
  json msg{{"action", "revoke_prefix"}};
  if (!backend.empty())
    msg["backend"] = backend;
  if (!tag.empty())
    msg["tag"] = tag;
  call<tlm::job>(*transport_, msg, wire::job_reply, std::move(cb));
}

void client::job(const std::string& job_id, callback<tlm::job> cb) {
  call<tlm::job>(*transport_, {{"action", "job"}, {"job_id", job_id}},
                 wire::job_reply, std::move(cb));
}

void client::health(callback<tlm::health> cb) {
  call<tlm::health>(*transport_, {{"action", "health"}}, wire::health_reply,
                    std::move(cb));
}

// -- futures ------------------------------------------------------------------

std::future<result<lease>> client::create_async(const create_request& req) {
  return as_future<lease>([&](auto cb) { create(req, std::move(cb)); });
}

std::future<result<lease>> client::get_async(const std::string& lease_id) {
  return as_future<lease>([&](auto cb) { get(lease_id, std::move(cb)); });
}

std::future<result<renewal>> client::renew_async(const std::string& lease_id,
                                                 int64_t ttl_ms) {
  return as_future<renewal>(
    [&](auto cb) { renew(lease_id, ttl_ms, std::move(cb)); });
}

std::future<result<revoke_outcome>>
client::revoke_async(const std::string& lease_id, bool force) {
  return as_future<revoke_outcome>(
    [&](auto cb) { revoke(lease_id, force, std::move(cb)); });
}

std::future<result<lease_page>> client::list_async(const list_filter& filter,
                                                   const std::string& cursor) {
  return as_future<lease_page>(
    [&](auto cb) { list(filter, cursor, std::move(cb)); });
}

std::future<result<lease>> client::exchange_async(const std::string& token,
                                                  const std::string& meta) {
  return as_future<lease>(
    [&](auto cb) { exchange(token, meta, std::move(cb)); });
}

std::future<result<tlm::job>>
client::revoke_prefix_async(const std::string& backend,
                            const std::string& tag) {
  return as_future<tlm::job>(
    [&](auto cb) { revoke_prefix(backend, tag, std::move(cb)); });
}

std::future<result<tlm::job>> client::job_async(const std::string& job_id) {
  return as_future<tlm::job>([&](auto cb) { job(job_id, std::move(cb)); });
}

std::future<result<tlm::health>> client::health_async() {
  return as_future<tlm::health>([&](auto cb) { health(std::move(cb)); });
}

// -- blocking calls -----------------------------------------------------------

result<lease> client::create_lease(const create_request& req) {
  return create_async(req).get();
}

result<lease> client::get_lease(const std::string& lease_id) {
  return get_async(lease_id).get();
}

result<renewal> client::renew_lease(const std::string& lease_id,
                                    int64_t ttl_ms) {
  return renew_async(lease_id, ttl_ms).get();
}

result<revoke_outcome> client::revoke_lease(const std::string& lease_id,
                                            bool force) {
  return revoke_async(lease_id, force).get();
}

result<lease_page> client::list_page(const list_filter& filter,
                                     const std::string& cursor) {
  return list_async(filter, cursor).get();
}

lease_pager client::list_all(const list_filter& filter) {
  return lease_pager{[this, filter](const std::string& cursor) {
    return list_page(filter, cursor);
  }};
}

result<lease> client::exchange_token(const std::string& token,
                                     const std::string& meta) {
  return exchange_async(token, meta).get();
}

result<tlm::job> client::start_revoke_prefix(const std::string& backend,
                                             const std::string& tag) {
  return revoke_prefix_async(backend, tag).get();
}

result<tlm::job> client::get_job(const std::string& job_id) {
  return job_async(job_id).get();
}

result<tlm::health> client::get_health() {
  return health_async().get();
}

} // namespace tlm::inline client_api
