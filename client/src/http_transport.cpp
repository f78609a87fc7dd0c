// HTTP: POST /v1/actions on one keep-alive connection, one call at a time
// on a worker thread; Poco's session reconnects when the server closed it.

#include <condition_variable>
#include <deque>
#include <mutex>
#include <sstream>
#include <thread>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/StreamCopier.h>

#include "transport.hpp"

namespace tlm::inline client_api::detail {

namespace {

class http_transport : public transport {
public:
  explicit http_transport(connection_options opts)
    : opts_(std::move(opts)), session_(opts_.host, opts_.port) {
    auto ms = [](std::chrono::milliseconds d) {
      return Poco::Timespan{d.count() * 1000};
    };
    session_.setTimeout(ms(opts_.connect_timeout), ms(opts_.request_timeout),
                        ms(opts_.request_timeout));
    session_.setKeepAlive(true);
    worker_ = std::thread([this] { work(); });
  }

  ~http_transport() override {
    {
      std::lock_guard guard{mtx_};
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void send(const wire::json& msg, on_reply done) override {
    {
      std::lock_guard guard{mtx_};
      queue_.push_back({msg.dump(), std::move(done)});
    }
    cv_.notify_one();
  }

private:
  struct call {
    std::string body;
    on_reply done;
  };

  std::string where() const {
    return "tlmd at http://" + opts_.host + ":" + std::to_string(opts_.port);
  }

  void work() {
    for (;;) {
      std::unique_lock guard{mtx_};
      cv_.wait(guard, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;
      auto next = std::move(queue_.front());
      queue_.pop_front();
      bool stopping = stopping_;
      guard.unlock();
      if (stopping)
        next.done(failure{errc::connection_failed, "the client was closed"});
      else
        next.done(post(next.body));
    }
  }

  wire::reply post(const std::string& body) {
    try {
      Poco::Net::HTTPRequest req{Poco::Net::HTTPRequest::HTTP_POST,
                                 "/v1/actions",
                                 Poco::Net::HTTPMessage::HTTP_1_1};
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(body.size()));
      if (!opts_.api_key.empty())
        req.set("Authorization", "Bearer " + opts_.api_key);
      session_.sendRequest(req) << body;
      Poco::Net::HTTPResponse resp;
      auto& in = session_.receiveResponse(resp);
      std::string text;
      Poco::StreamCopier::copyToString(in, text);
      auto reply = wire::parse_reply(text);
      if (!reply)
        return failure{errc::bad_reply,
                       where() + " answered HTTP "
                         + std::to_string(static_cast<int>(resp.getStatus()))
                         + " without a protocol reply"};
      return reply;
    } catch (const Poco::TimeoutException&) {
      session_.reset();
      return failure{errc::timeout,
                     "no reply from " + where() + " within "
                       + std::to_string(opts_.request_timeout.count()) + " ms"};
    } catch (const Poco::Exception& e) {
      session_.reset();
      return failure{errc::connection_failed,
                     "cannot reach " + where() + ": " + e.displayText()};
    }
  }

  connection_options opts_;
  Poco::Net::HTTPClientSession session_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<call> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

class failing_transport : public transport {
public:
  explicit failing_transport(failure err) : err_(std::move(err)) {
  }
  void send(const wire::json&, on_reply done) override {
    done(err_);
  }

private:
  failure err_;
};

} // namespace

std::unique_ptr<transport> make_http_transport(const connection_options& opts) {
  return std::make_unique<http_transport>(opts);
}

std::unique_ptr<transport> make_failing_transport(failure err) {
  return std::make_unique<failing_transport>(std::move(err));
}

} // namespace tlm::inline client_api::detail
