#pragma once

// Drives actors on CAF's test coordinator: messages run only when the test
// says so, and time moves only when the test advances it (no sleeps).

#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <doctest/doctest.h>

#include "actors/type_ids.hpp"
#include "core/error.hpp"

namespace tlm::test {

struct actor_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;

  actor_fixture() {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.add_message_types<caf::id_block::tlm>();
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
  }

  /// Actors the fixture stops before the system shuts down (a pending
  /// timer keeps an actor alive, and ~actor_system waits for all actors).
  std::vector<caf::actor> owned;

  template <class Handle>
  Handle own(Handle h) {
    owned.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  ~actor_fixture() {
    for (auto& a : owned)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    owned.clear();
    sched->run();
    // Fire what is left on the clock; it goes to dead actors.
    sched->clock().advance_time(std::chrono::hours(24 * 365));
    sched->run();
  }

  /// The reply handler for a request answering `Result`; a reply of
  /// several values is asked for as a `std::tuple` of them.
  template <class Result>
  struct reply_of {
    template <class F>
    static auto handler(F f) {
      return [f](Result& r) { f(std::move(r)); };
    }
  };

  template <class... Rs>
  struct reply_of<std::tuple<Rs...>> {
    template <class F>
    static auto handler(F f) {
      return [f](Rs&... rs) { f(std::make_tuple(std::move(rs)...)); };
    }
  };

  /// Sends a request from a throwaway actor and returns a slot that holds
  /// the answer once the scheduler has run far enough.
  template <class Result, class Handle, class... Ts>
  std::shared_ptr<std::optional<caf::expected<Result>>>
  send_request(const Handle& target, Ts... xs) {
    auto out = std::make_shared<std::optional<caf::expected<Result>>>();
    sys->spawn([=](caf::event_based_actor* self) {
      self->request(target, caf::infinite, xs...)
        .then(reply_of<Result>::handler([=](Result r) { *out = std::move(r); }),
              [=](caf::error& e) { *out = std::move(e); });
    });
    return out;
  }

  /// Requests and runs every message until the answer is there.
  template <class Result, class Handle, class... Ts>
  caf::expected<Result> call(const Handle& target, Ts... xs) {
    auto out = send_request<Result>(target, xs...);
    sched->run();
    REQUIRE(out->has_value());
    return std::move(**out);
  }

  /// The stored record of a lease, read the way the manager's start does
  /// (storage has no single-lease read: nothing but tests would call it).
  template <class Storage>
  caf::expected<lease> stored_lease(const Storage& storage,
                                    const std::string& id) {
    auto page = call<lease_page>(storage, atom::load_v, std::string{},
                                 uint32_t{1'000'000});
    if (!page)
      return std::move(page.error());
    for (auto& x : page->leases)
      if (x.id == id)
        return x;
    return make_error(ec::not_found, "not stored");
  }

  /// Moves simulated time forward, firing due timers, then runs.
  void advance(std::chrono::milliseconds d) {
    sched->clock().advance_time(d);
    sched->run();
  }
};

} // namespace tlm::test
