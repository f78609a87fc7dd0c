// Keeps a credential alive while the program works, the way an
// application would use the library:
//
//   tlm_keeper_example tcp://127.0.0.1:3667 influx [SECONDS]
//
// It creates a lease at the backend, prints every change the keeper
// reports, reads `current()` as its work loop would, and revokes the
// lease when it stops (after SECONDS, default 30, or at Ctrl-C).

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "tlm/client.hpp"
#include "tlm/lease_keeper.hpp"

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_signal(int) {
  stop_requested = true;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " ADDRESS BACKEND [SECONDS]\n";
    return 2;
  }
  int seconds = argc > 3 ? std::atoi(argv[3]) : 30;
  tlm::connection_options opts;
  if (auto parsed = tlm::parse_address(argv[1], opts); !parsed) {
    std::cerr << parsed.error().message << '\n';
    return 2;
  }
  tlm::client client{opts};

  tlm::keeper_options keep;
  keep.create.backend = argv[2];
  keep.create.ttl_ms = 10000; // renewed every ~7 s
  keep.timing.stale_fraction = 0.75;
  keep.timing.jitter_fraction = 0.1;
  keep.revoke_on_stop = true;
  keep.watcher = [](const tlm::keeper_event& ev) {
    // Never print the value itself: it is a credential.
    std::cout << tlm::to_string(ev.kind);
    if (ev.lease)
      std::cout << " lease " << ev.lease->id;
    if (ev.error)
      std::cout << " error " << tlm::to_string(ev.error->code) << ": "
                << ev.error->message;
    std::cout << std::endl;
  };
  tlm::lease_keeper keeper{client, keep};
  if (auto started = keeper.start(); !started) {
    std::cerr << started.error().message << '\n';
    return 2;
  }
  auto first = keeper.wait_ready(std::chrono::seconds{10});
  if (!first) {
    std::cerr << "no lease: " << first.error().message << '\n';
    keeper.stop();
    return 3;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  for (int i = 0; i < seconds * 10 && !stop_requested; ++i) {
    // The work loop: current() never waits for the network.
    if (auto lease = keeper.current())
      (void)lease->value; // ... use the credential here ...
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  auto revoked = keeper.stop();
  if (!revoked) {
    std::cerr << "revoke failed: " << revoked.error().message << '\n';
    return 7;
  }
  std::cout << (revoked->confirmed ? "revoked" : "revocation pending")
            << std::endl;
  return 0;
}
