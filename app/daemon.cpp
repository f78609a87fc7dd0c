#include "app/daemon.hpp"

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <future>
#include <iostream>
#include <optional>
#include <thread>

#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <caf/all.hpp>

#include "actors/gateway.hpp"
#include "actors/lease_manager.hpp"
#include "api/api_keys.hpp"
#include "api/dispatcher.hpp"
#include "api/http_server.hpp"
#include "api/io_loops.hpp"
#include "api/listener.hpp"
#include "api/tcp_server.hpp"
#include "api/token_server_routes.hpp"
#include "app/config.hpp"
#include "cloud_backends/cloud_actor.hpp"
#include "cloud_backends/registry.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "storage_backends/storage_actor.hpp"

namespace tlm {

namespace {

using namespace std::chrono_literals;

void log(const std::string& level, const std::string& text) {
  log_line(level, text);
}

/// Asks an actor from this (non-actor) thread and waits for the answer.
template <class Result, class Handle, class... Ts>
caf::expected<Result> ask(gateway& gw, Handle target,
                          std::chrono::milliseconds timeout, Ts... xs) {
  auto promise = std::make_shared<std::promise<caf::expected<Result>>>();
  auto future = promise->get_future();
  gw.submit(gateway_job{[=](caf::event_based_actor* self) {
    self->request(target, timeout, xs...)
      .then([promise](Result& r) { promise->set_value(std::move(r)); },
            [promise](caf::error& e) { promise->set_value(std::move(e)); });
  }});
  return future.get();
}

caf::actor_system_config make_system_config() {
  caf::actor_system_config cfg;
  // Measured on 2 cores (bench/suite.py): work sharing beats the default
  // work stealing, and one worker beats two by 35% for pipelined creates:
  // a create hops manager -> backend -> storage -> manager, and every hop
  // to another worker is a wake-up. Half the cores go to the actors, half
  // to the event loops (api/io_loops.hpp); blocking backends and storage
  // have threads of their own.
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads",
          std::max<size_t>(1, (std::thread::hardware_concurrency() + 1) / 2));
  cfg.add_message_types<caf::id_block::tlm>();
  cfg.add_error_category(caf::atom("tlm"), [](uint8_t code, caf::atom_value,
                                              const caf::message& ctx) {
    return std::string{to_string(static_cast<ec>(code))} + ": "
           + caf::to_string(ctx);
  });
  return cfg;
}

/// Signals are taken by `sigwait` in the main thread only: blocked here,
/// before any thread starts, so every thread inherits the mask.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return set;
}

/// Listens on `address`, or logs why not and returns nothing. A port in
/// use is named: most likely another tlmd runs there, and sharing it would
/// split the requests.
std::optional<Poco::Net::ServerSocket>
listen_on(const char* what, const Poco::Net::SocketAddress& address) {
  auto port = std::string{what} + " port " + std::to_string(address.port())
              + " on " + address.host().toString();
  try {
    return listen_exclusively(address);
  } catch (const Poco::Net::NetException& e) {
    if (e.code() == EADDRINUSE)
      log("error", "the " + port + " is in use (is another tlmd running?)");
    else
      log("error", "cannot listen on the " + port + ": " + e.displayText());
  } catch (const Poco::Exception& e) {
    log("error", "cannot listen on the " + port + ": " + e.displayText());
  }
  return std::nullopt;
}

/// What a start needs before any actor runs: an operator's mistake stops
/// it while it is built, with a message naming what is wrong.
struct start_parts {
  api_keys keys;
  std::optional<Poco::Net::ServerSocket> http_socket, tcp_socket;
  std::vector<std::pair<std::string, std::shared_ptr<cloud_backend>>> clouds;
  std::unique_ptr<storage_backend> storage;
  bool new_storage = false;
};

/// Reads the API keys and takes the ports; an exit code on failure.
int take_ports(const daemon_config& cfg, start_parts& parts) {
  if (!cfg.api_key_file.empty()) {
    auto loaded = api_keys::load(cfg.api_key_file);
    if (!loaded) {
      log("error", message_of(loaded.error()));
      return 2;
    }
    parts.keys = std::move(*loaded);
  }
  Poco::Net::SocketAddress http_address, tcp_address;
  try {
    http_address = Poco::Net::SocketAddress(cfg.bind, cfg.http_port);
    tcp_address = Poco::Net::SocketAddress(cfg.bind, cfg.tcp_port);
  } catch (const Poco::Exception& e) {
    log("error",
        "cannot use bind address '" + cfg.bind + "': " + e.displayText());
    return 2;
  }
  if (!http_address.host().isLoopback() && parts.keys.empty()) {
    log("error", "refusing to listen on non-loopback address '" + cfg.bind
                   + "' without API keys: set --api-key-file");
    return 2;
  }
  // The ports are taken first, and the storage locked next: a second tlmd
  // on them stops before it loads (and revokes) a single lease. Clients
  // that connect before the ready line wait in the listen backlog.
  parts.http_socket = listen_on("HTTP", http_address);
  if (!parts.http_socket)
    return 1;
  parts.tcp_socket = listen_on("TCP", tcp_address);
  return parts.tcp_socket ? 0 : 1;
}

/// Builds the backends and opens the storage; an exit code on failure.
int build_backends(const daemon_config& cfg, start_parts& parts) {
  for (auto& [name, settings] : cfg.backends.items()) {
    auto backend = make_cloud_backend(name, settings);
    if (!backend) {
      log("error", message_of(backend.error()));
      return 2;
    }
    parts.clouds.emplace_back(name, std::move(*backend));
  }
  // The one folder tlmd creates is the built-in default's, so that a first
  // start without flags works; a configured path's folder must exist.
  if (cfg.storage == daemon_config{}.storage) {
    std::error_code ignored;
    // Ours alone, whatever the umask: the database holds token values.
    if (std::filesystem::create_directory(default_storage_dir, ignored))
      std::filesystem::permissions(default_storage_dir,
                                   std::filesystem::perms::owner_all, ignored);
  }
  auto storage = make_storage_backend(cfg.storage, cfg.storage_password_file);
  if (!storage) {
    log("error", message_of(storage.error()));
    return 2;
  }
  parts.storage = std::move(*storage);
  parts.new_storage = parts.storage->created_new();
  if (parts.new_storage && cfg.storage.rfind("sqlite:", 0) != 0)
    log("info", "created the schema in a new, empty database");
  else if (parts.new_storage) {
    std::filesystem::path path = cfg.storage.substr(cfg.storage.find(':') + 1);
    auto where = path.string();
    if (path.is_relative())
      where += " ("
               + std::filesystem::absolute(path).lexically_normal().string()
               + ")";
    log("info", "created a new, empty database at " + where);
  }
  return 0;
}

lease_manager_config manager_config(const daemon_config& cfg,
                                    start_parts& parts,
                                    caf::actor_system& sys) {
  lease_manager_config mcfg;
  mcfg.default_backend = cfg.default_backend;
  mcfg.default_ttl_ms = cfg.default_ttl_ms;
  mcfg.min_ttl_ms = cfg.min_ttl_ms;
  mcfg.max_ttl_ms = cfg.max_ttl_ms;
  mcfg.retry_base_ms = cfg.retry_base_ms;
  mcfg.retry_max_ms = cfg.retry_max_ms;
  mcfg.max_revoke_attempts = static_cast<uint32_t>(cfg.max_revoke_attempts);
  mcfg.shared_poll_ms = cfg.shared_poll_ms;
  mcfg.instance_timeout_ms = cfg.instance_timeout_ms;
  if (auto* shared = parts.storage->shared()) {
    mcfg.shared = true;
    log("info", "shared storage: this is instance '" + shared->instance()
                  + "'; any number of instances may use the database");
  }
  for (auto& [name, backend] : parts.clouds) {
    if (mcfg.shared)
      backend->share_leases();
    log("info", "backend " + backend->describe());
    mcfg.backends.push_back({name, spawn_cloud_actor(sys, backend),
                             backend->exchangeable(), backend->blocking(),
                             backend->timeout(), backend->concurrency()});
  }
  mcfg.storage = spawn_storage_actor(sys, std::move(parts.storage));
  return mcfg;
}

/// Serves until SIGTERM or SIGINT, then stops accepting and waits (at
/// most 30 s) for the requests in flight.
void serve_until_stopped(const daemon_config& cfg, start_parts& parts,
                         dispatcher& disp, const sigset_t& stop_signals) {
  // One set of event loops serves both APIs.
  auto loops = std::make_shared<io_loops>();
  http_server http{disp,
                   std::move(*parts.http_socket),
                   cfg.http_threads,
                   cfg.http,
                   {token_server_surface(disp, cfg.token_server)},
                   loops};
  tcp_server tcp{disp, std::move(*parts.tcp_socket), cfg.tcp_max_connections,
                 cfg.tcp, loops};
  http.start();
  tcp.start();
  log("info", "listening on " + cfg.bind + ": http "
                + std::to_string(http.port()) + ", tcp "
                + std::to_string(tcp.port()));
  // Scripts parse the prefix up to the tcp port; the storage comes last, so
  // a path with spaces stays the rest of the line.
  std::cout << "tlmd ready http=" << http.port() << " tcp=" << tcp.port()
            << " storage=" << (parts.new_storage ? "new:" : "") << cfg.storage
            << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  log("info", std::string{"got "} + (sig == SIGTERM ? "SIGTERM" : "SIGINT")
                + ", finishing in-flight requests");
  // Stop accepting; each server finishes the requests it has begun.
  tcp.stop();
  http.stop();
  loops->join();
  for (auto deadline = std::chrono::steady_clock::now() + 30s;
       disp.in_flight() > 0 && std::chrono::steady_clock::now() < deadline;)
    std::this_thread::sleep_for(5ms);
}

int serve(const daemon_config& cfg, const sigset_t& stop_signals) {
  start_parts parts;
  if (auto code = take_ports(cfg, parts))
    return code;
  if (auto code = build_backends(cfg, parts))
    return code;
  auto sys_cfg = make_system_config();
  caf::actor_system sys{sys_cfg};
  gateway gw{sys, 2};
  auto mcfg = manager_config(cfg, parts, sys);
  auto storage = mcfg.storage;
  auto manager = spawn_lease_manager(sys, mcfg);
  auto stop_actors = [&] {
    gw.stop();
    caf::anon_send_exit(manager, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
    for (auto& handle : mcfg.backends)
      caf::anon_send_exit(handle.actor, caf::exit_reason::user_shutdown);
  };
  auto loaded = ask<uint64_t>(gw, manager, std::chrono::hours(1),
                              atom::ready_v);
  if (!loaded) {
    log("error",
        "cannot load the stored leases: " + message_of(loaded.error()));
    stop_actors();
    return 1;
  }
  if (!mcfg.shared)
    log("info", "loaded " + std::to_string(*loaded) + " live leases from "
                  + cfg.storage);
  dispatcher disp{manager, parts.keys, 60s};
  serve_until_stopped(cfg, parts, disp, stop_signals);
  // Revocations already at a backend finish (bounded): their leases are
  // then gone for good instead of being revoked again after the restart.
  if (!ask<atom::ok>(gw, manager, 10s, atom::flush_v))
    log("warning", "revocations still in flight after 10 s; the next start "
                   "finishes them");
  auto flushed = ask<atom::ok>(gw, storage, 30s, atom::flush_v);
  if (!flushed)
    log("error", "storage flush failed: " + message_of(flushed.error()));
  stop_actors();
  sys.await_all_actors_done();
  log("info", "stopped");
  return flushed ? 0 : 1;
}

} // namespace

int run_daemon(int argc, char** argv) {
  auto stop_signals = block_stop_signals();
  auto cmd = parse_command_line(argc, argv);
  if (cmd.exit_now) {
    (cmd.exit_code == 0 ? std::cout : std::cerr) << cmd.output;
    return cmd.exit_code;
  }
  return serve(cmd.config, stop_signals);
}

} // namespace tlm
