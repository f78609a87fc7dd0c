#include "api/io_loops.hpp"

#include <algorithm>

namespace tlm {

io_loops::io_loops(size_t threads) {
  if (threads == 0)
    threads = std::max<size_t>(1,
                               (std::thread::hardware_concurrency() + 1) / 2);
  for (size_t i = 0; i < threads; ++i) {
    // Hint 1: each loop runs on one thread, so Asio can skip its locks.
    loops_.push_back(std::make_unique<asio::io_context>(1));
    guards_.emplace_back(loops_.back()->get_executor());
  }
  for (auto& loop : loops_)
    threads_.emplace_back([ctx = loop.get()] { ctx->run(); });
}

io_loops::~io_loops() {
  join();
}

asio::io_context& io_loops::next() {
  return *loops_[next_++ % loops_.size()];
}

void io_loops::join() {
  for (auto& g : guards_)
    g.reset();
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
}

} // namespace tlm
