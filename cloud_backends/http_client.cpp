#include "cloud_backends/http_client.hpp"

#include <sstream>

#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include "core/error.hpp"

namespace tlm {

namespace {

/// One TLS context for all clients: verify peers against the system CAs.
Poco::Net::Context::Ptr tls_context() {
  static Poco::Net::Context::Ptr context = [] {
    Poco::Net::initializeSSL();
    return Poco::Net::Context::Ptr(new Poco::Net::Context(
      Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
      Poco::Net::Context::VERIFY_RELAXED, 9, true));
  }();
  return context;
}

} // namespace

caf::expected<std::shared_ptr<http_client>>
http_client::make(const std::string& base_url,
                  std::chrono::milliseconds timeout, std::string service) {
  std::shared_ptr<http_client> result{new http_client};
  try {
    Poco::URI uri(base_url);
    if (uri.getScheme() != "http" && uri.getScheme() != "https")
      throw Poco::SyntaxException("scheme");
    if (uri.getHost().empty())
      throw Poco::SyntaxException("host");
    result->scheme_ = uri.getScheme();
    result->host_ = uri.getHost();
    result->port_ = uri.getPort();
    result->path_prefix_ = uri.getPath();
    while (!result->path_prefix_.empty() && result->path_prefix_.back() == '/')
      result->path_prefix_.pop_back();
  } catch (const Poco::Exception&) {
    return make_error(ec::invalid_request,
                      "'" + base_url + "' is not an http:// or https:// URL");
  }
  result->base_url_ = base_url;
  result->timeout_ = timeout;
  result->service_ = std::move(service);
  return result;
}

http_client::~http_client() = default;

std::unique_ptr<Poco::Net::HTTPClientSession> http_client::take() {
  for (;;) {
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (idle_.empty())
        break;
      session = std::move(idle_.back());
      idle_.pop_back();
    }
    // An idle keep-alive connection that is readable has been closed by
    // the server (e.g. it restarted): drop it rather than fail a request.
    try {
      if (session->connected()
          && !session->socket().poll(Poco::Timespan(0),
                                     Poco::Net::Socket::SELECT_READ
                                       | Poco::Net::Socket::SELECT_ERROR))
        return session;
    } catch (const Poco::Exception&) {
      // unusable: fall through to the next one
    }
  }
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  if (scheme_ == "https")
    session = std::make_unique<Poco::Net::HTTPSClientSession>(host_, port_,
                                                              tls_context());
  else
    session = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
  auto t = Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(
    timeout_.count() * 1000));
  session->setTimeout(t, t, t);
  session->setKeepAlive(true);
  return session;
}

void http_client::give_back(
  std::unique_ptr<Poco::Net::HTTPClientSession> session) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (idle_.size() < 64)
    idle_.push_back(std::move(session));
}

caf::expected<http_response> http_client::send(const std::string& method,
                                               const std::string& path,
                                               const std::string& body,
                                               const headers& extra) {
  bool idempotent = method != "POST" && method != "PATCH";
  for (int attempt = 0;; ++attempt) {
    auto session = take();
    bool reused = session->connected();
    try {
      Poco::Net::HTTPRequest req(method, path_prefix_ + path,
                                 Poco::Net::HTTPMessage::HTTP_1_1);
      req.setKeepAlive(true);
      for (auto& [name, value] : extra)
        req.set(name, value);
      if (!body.empty() || method == "POST" || method == "PATCH") {
        req.setContentLength(static_cast<std::streamsize>(body.size()));
        if (!req.has("Content-Type"))
          req.setContentType("application/json");
      }
      session->sendRequest(req).write(body.data(),
                                      static_cast<std::streamsize>(body.size()));
      Poco::Net::HTTPResponse resp;
      auto& in = session->receiveResponse(resp);
      http_response result;
      result.status = static_cast<int>(resp.getStatus());
      result.body.assign(std::istreambuf_iterator<char>(in), {});
      if (resp.getKeepAlive())
        give_back(std::move(session));
      return result;
    } catch (const Poco::Net::SSLException& e) {
      // Not worth a retry: the server's certificate or TLS setup is wrong.
      return make_error(ec::backend_error,
                        service_ + " at " + base_url_
                          + " failed TLS verification: " + e.displayText());
    } catch (const Poco::Exception& e) {
      // A kept-alive connection the server has closed fails at once; one
      // more try on a fresh connection is safe for idempotent methods.
      if (reused && idempotent && attempt == 0)
        continue;
      bool timed_out = dynamic_cast<const Poco::TimeoutException*>(&e)
                       != nullptr;
      return make_error(ec::backend_unavailable,
                        service_ + " at " + base_url_
                          + (timed_out ? " did not answer in time"
                                       : " is unreachable: " + e.displayText()));
    }
  }
}

std::string url_encode(const std::string& text) {
  std::string out;
  Poco::URI::encode(text, "!#$&'()*+,/:;=?@[]", out);
  return out;
}

} // namespace tlm
