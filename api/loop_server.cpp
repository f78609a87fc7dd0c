#include "api/loop_server.hpp"

#include <chrono>
#include <thread>

#include <unistd.h>

#include <asio/post.hpp>

namespace tlm {

using asio::ip::tcp;

namespace {

constexpr size_t scratch_bytes = 256 * 1024;

/// A written buffer this large is given back rather than kept for reuse.
constexpr size_t keep_buffer_bytes = 256 * 1024;

} // namespace

int64_t steady_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

loop_state::loop_state(asio::io_context& c)
  : ctx(c), timer(c), scratch(scratch_bytes) {
  // nop
}

// -- connections --------------------------------------------------------------

loop_conn::loop_conn(loop_state& loop, tcp::socket socket)
  : loop_(loop), sock_(std::move(socket)) {
  touch();
}

void loop_conn::start() {
  asio::error_code ignored;
  sock_.set_option(tcp::no_delay(true), ignored);
  // Reads and notices never block the loop; async writes are unaffected.
  sock_.non_blocking(true, ignored);
  index_ = loop_.conns.size();
  loop_.conns.push_back(shared_from_this());
  on_input();
}

void loop_conn::wait_readable() {
  if (reading_ || closed_ || eof_)
    return;
  reading_ = true;
  sock_.async_wait(tcp::socket::wait_read,
                   [self = shared_from_this()](const asio::error_code& err) {
                     self->on_readable(err);
                   });
}

void loop_conn::on_readable(const asio::error_code& err) {
  reading_ = false;
  if (closed_)
    return;
  if (err)
    return close();
  auto& buf = loop_.scratch;
  asio::error_code rerr;
  auto n = sock_.read_some(asio::buffer(buf.data(), buf.size()), rerr);
  if (rerr == asio::error::would_block || rerr == asio::error::try_again)
    return wait_readable();
  if (rerr == asio::error::eof)
    eof_ = true;
  else if (rerr)
    return close(); // reset: nobody to answer
  in_.append(buf.data(), n);
  touch();
  on_input();
}

void loop_conn::write_more() {
  if (writing_active_ || closed_)
    return;
  if (written_ == writing_.size()) {
    written_ = 0;
    if (writing_.capacity() > keep_buffer_bytes)
      std::string{}.swap(writing_);
    writing_.clear();
    if (out_.empty()) {
      if (close_when_written_)
        close();
      return;
    }
    writing_.swap(out_);
  }
  writing_active_ = true;
  sock_.async_write_some(
    asio::buffer(writing_.data() + written_, writing_.size() - written_),
    [self = shared_from_this()](const asio::error_code& err, size_t n) {
      self->written(err, n);
    });
}

void loop_conn::written(const asio::error_code& err, size_t n) {
  writing_active_ = false;
  if (closed_)
    return;
  if (err)
    return close();
  written_ += n;
  touch();
  write_more();
  on_written(n);
}

void loop_conn::finish_after_writes() {
  close_when_written_ = true;
  write_more();
}

void loop_conn::send_now(std::string_view bytes) {
  if (writing())
    return; // a reply is half written: a line now would garble it
  asio::error_code ignored;
  sock_.write_some(asio::buffer(bytes.data(), bytes.size()), ignored);
}

void loop_conn::close() {
  if (closed_)
    return;
  closed_ = true;
  asio::error_code ignored;
  sock_.shutdown(tcp::socket::shutdown_both, ignored);
  sock_.close(ignored);
  on_close();
  out_.clear();
  writing_.clear();
  written_ = 0;
  busy = false;
  if (server_)
    server_->leave(*this);
  // Last: this may drop the loop's reference to us.
  auto self = shared_from_this();
  auto& conns = loop_.conns;
  if (index_ < conns.size() && conns[index_] == self) {
    conns[index_] = std::move(conns.back());
    conns[index_]->index_ = index_;
    conns.pop_back();
  }
}

// -- the server ---------------------------------------------------------------

loop_server::loop_server(Poco::Net::ServerSocket socket,
                         std::shared_ptr<io_loops> loops, int64_t sweep_ms)
  : loops_(loops ? loops : std::make_shared<io_loops>()),
    own_loops_(loops == nullptr),
    listening_(std::move(socket)),
    sweep_ms_(sweep_ms) {
  auto family = listening_.address().family() == Poco::Net::SocketAddress::IPv6
                  ? tcp::v6()
                  : tcp::v4();
  acceptor_ = std::make_unique<tcp::acceptor>(loops_->at(0));
  acceptor_->assign(family, ::dup(listening_.impl()->sockfd()));
  for (size_t i = 0; i < loops_->size(); ++i)
    loop_states_.push_back(std::make_unique<loop_state>(loops_->at(i)));
}

uint16_t loop_server::port() const {
  return listening_.address().port();
}

void loop_server::start() {
  asio::post(loops_->at(0), [self = shared_from_this()] { self->accept(); });
  for (auto& loop : loop_states_)
    asio::post(loop->ctx, [self = shared_from_this(), l = loop.get()] {
      self->arm_sweep(*l);
    });
}

void loop_server::accept() {
  auto& loop = *loop_states_[next_loop_++ % loop_states_.size()];
  acceptor_->async_accept(
    loop.ctx, [self = shared_from_this(), &loop](const asio::error_code& err,
                                                 tcp::socket socket) {
      if (self->stopping)
        return;
      if (err) {
        // Out of descriptors, or reset before we took it: try again in a
        // moment rather than spin.
        auto timer = std::make_shared<asio::steady_timer>(
          self->loops_->at(0), std::chrono::milliseconds(10));
        timer->async_wait([self, timer](const asio::error_code&) {
          if (!self->stopping)
            self->accept();
        });
        return;
      }
      if (auto c = self->make_conn(loop, std::move(socket))) {
        {
          std::lock_guard<std::mutex> guard{self->mtx_};
          c->server_ = self;
          c->registry_index_ = self->live_.size();
          self->live_.push_back(c.get());
        }
        asio::post(loop.ctx, [c] { c->start(); });
      }
      self->accept();
    });
}

bool loop_server::evict_one() {
  std::lock_guard<std::mutex> guard{mtx_};
  loop_conn* oldest = nullptr;
  for (auto* c : live_)
    if (!c->busy && !c->evicted
        && (!oldest || c->last_active_ms < oldest->last_active_ms))
      oldest = c;
  if (!oldest)
    return false;
  oldest->evicted = true;
  ++evicted_;
  asio::post(oldest->loop().ctx,
             [c = oldest->shared_from_this()] { c->check(steady_now_ms()); });
  return true;
}

size_t loop_server::open() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return live_.size() - evicted_;
}

void loop_server::leave(loop_conn& c) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = c.registry_index_;
  if (i >= live_.size() || live_[i] != &c)
    return;
  if (c.evicted)
    --evicted_;
  live_[i] = live_.back();
  live_[i]->registry_index_ = i;
  live_.pop_back();
}

void loop_server::sweep(loop_state& loop) {
  auto now = steady_now_ms();
  // A connection may close itself (and leave the list) while checked.
  auto conns = loop.conns;
  for (auto& c : conns)
    c->check(now);
  if (stopping)
    for (auto& c : conns)
      c->shut();
}

void loop_server::arm_sweep(loop_state& loop) {
  loop.timer.expires_after(std::chrono::milliseconds(sweep_ms_));
  loop.timer.async_wait(
    [self = shared_from_this(), &loop](const asio::error_code& err) {
      if (err)
        return;
      self->sweep(loop);
      if (!self->stopping || !loop.conns.empty())
        self->arm_sweep(loop);
    });
}

void loop_server::stop(const std::function<bool()>& settled) {
  if (stopping.exchange(true))
    return;
  asio::post(loops_->at(0), [self = shared_from_this()] {
    asio::error_code ignored;
    self->acceptor_->close(ignored);
  });
  for (auto& loop : loop_states_)
    asio::post(loop->ctx, [self = shared_from_this(), l = loop.get()] {
      self->sweep(*l);
    });
  for (;;) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (live_.empty() && settled())
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& loop : loop_states_)
    asio::post(loop->ctx, [l = loop.get()] { l->timer.cancel(); });
}

} // namespace tlm
