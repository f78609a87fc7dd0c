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

namespace tlm {

namespace {

/// One TLS context for all clients: verify peers against the system CAs.
Poco::Net::Context::Ptr tls_context() {
  static Poco::Net::Context::Ptr context = [] {
    Poco::Net::initializeSSL();
    return Poco::Net::Context::Ptr(
      new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
                             Poco::Net::Context::VERIFY_RELAXED, 9, true));
  }();
  return context;
}

} // namespace

http_client::http_client(const std::string& base_url,
                         std::chrono::milliseconds timeout,
                         service_errors errors)
  : base_url_(base_url), timeout_(timeout), errors_(std::move(errors)) {
  Poco::URI uri(base_url);
  scheme_ = uri.getScheme();
  host_ = uri.getHost();
  port_ = uri.getPort();
  path_prefix_ = uri.getPath();
  while (!path_prefix_.empty() && path_prefix_.back() == '/')
    path_prefix_.pop_back();
}

http_client::~http_client() = default;

std::unique_ptr<Poco::Net::HTTPClientSession> http_client::take() {
  // An idle keep-alive connection that is readable has been closed by the
  // server (e.g. it restarted): drop it rather than fail a request.
  auto open = [](Poco::Net::HTTPClientSession& idle) {
    try {
      return idle.connected()
             && !idle.socket().poll(Poco::Timespan(0),
                                    Poco::Net::Socket::SELECT_READ
                                      | Poco::Net::Socket::SELECT_ERROR);
    } catch (const Poco::Exception&) {
      return false;
    }
  };
  if (auto session = pool_.take_idle(open))
    return session;
  std::unique_ptr<Poco::Net::HTTPClientSession> session;
  if (scheme_ == "https")
    session = std::make_unique<Poco::Net::HTTPSClientSession>(host_, port_,
                                                              tls_context());
  else
    session = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
  auto t = Poco::Timespan(
    static_cast<Poco::Timespan::TimeDiff>(timeout_.count() * 1000));
  session->setTimeout(t, t, t);
  session->setKeepAlive(true);
  return session;
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
      session->sendRequest(req).write(
        body.data(), static_cast<std::streamsize>(body.size()));
      Poco::Net::HTTPResponse resp;
      auto& in = session->receiveResponse(resp);
      http_response result;
      result.status = static_cast<int>(resp.getStatus());
      result.body.assign(std::istreambuf_iterator<char>(in), {});
      if (resp.getKeepAlive())
        pool_.give_back(std::move(session));
      return result;
    } catch (const Poco::Net::SSLException& e) {
      // Not worth a retry: the server's certificate or TLS setup is wrong.
      return errors_.untrusted(e.displayText());
    } catch (const Poco::Exception& e) {
      // A kept-alive connection the server has closed fails at once; one
      // more try on a fresh connection is safe for idempotent methods.
      if (reused && idempotent && attempt == 0)
        continue;
      if (dynamic_cast<const Poco::TimeoutException*>(&e) != nullptr)
        return errors_.timed_out();
      return errors_.unreachable(e.displayText());
    }
  }
}

std::string url_encode(const std::string& text) {
  std::string out;
  Poco::URI::encode(text, "!#$&'()*+,/:;=?@[]", out);
  return out;
}

} // namespace tlm
