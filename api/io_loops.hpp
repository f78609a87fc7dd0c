#pragma once

#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

namespace tlm {

/// A fixed number of event loops (Asio on epoll), one thread each, that
/// serve every connection of a server: a connection lives on one loop, so
/// its state needs no lock, and idle connections cost no thread.
class io_loops {
public:
  /// `threads` loops; 0 picks one per two cores (the manager and the
  /// storage need the others).
  explicit io_loops(size_t threads = 0);
  ~io_loops();

  io_loops(const io_loops&) = delete;
  io_loops& operator=(const io_loops&) = delete;

  /// The loops in turn, for the next connection.
  asio::io_context& next();

  asio::io_context& at(size_t i) {
    return *loops_[i];
  }

  size_t size() const {
    return loops_.size();
  }

  /// Lets the loops end once they have no work, and joins them.
  void join();

private:
  using guard = asio::executor_work_guard<asio::io_context::executor_type>;
  std::vector<std::unique_ptr<asio::io_context>> loops_;
  std::vector<guard> guards_;
  std::vector<std::thread> threads_;
  size_t next_ = 0;
};

} // namespace tlm
