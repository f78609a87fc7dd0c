// `tlm keep`: a lease_keeper in the foreground. It prints each new value,
// writes it to a file, or runs a command with the value in an environment
// variable until the command exits (like `vault agent` or `envconsul`).

#include <csignal>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>

#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "tlm/atomic_file.hpp"
#include "tlm/lease_keeper.hpp"
#include "wire.hpp"

namespace tlm::inline client_api::cli {

namespace {

volatile std::sig_atomic_t received_signal = 0;

extern "C" void on_signal(int sig) {
  received_signal = sig;
}

struct keep_flags {
  create_flags create;
  std::string lease_id;
  std::string cache;
  std::string output;
  std::string env_var = "TLM_VALUE";
  std::string events;
  std::string on_change = "restart";
  double stale = 0.75;
  double jitter = 0.1;
  int64_t backoff_max_ms = 30000;
  int64_t ready_timeout_ms = 30000;
  bool no_revoke = false;
  bool no_recreate = false;
  std::vector<std::string> command;
};

/// The keeper's events, handed from its thread to the main loop.
class event_queue {
public:
  void push(const keeper_event& ev) {
    std::lock_guard guard{mtx_};
    events_.push_back(ev);
  }
  std::deque<keeper_event> take() {
    std::lock_guard guard{mtx_};
    return std::exchange(events_, {});
  }

private:
  std::mutex mtx_;
  std::deque<keeper_event> events_;
};

int64_t epoch_ms(wall_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           t.time_since_epoch())
    .count();
}

/// An event as one JSON line; the value only in the events file the user
/// asked for.
std::string event_line(const keeper_event& ev) {
  wire::json j{{"event", std::string{to_string(ev.kind)}},
               {"at", epoch_ms(ev.at)}};
  if (ev.lease) {
    j["lease_id"] = ev.lease->id;
    j["value"] = ev.lease->value;
    j["expires"] = epoch_ms(ev.lease->expires);
    j["ttl"] = ev.lease->ttl_ms;
  }
  if (ev.error) {
    j["error"] = std::string{to_string(ev.error->code)};
    j["attempt"] = ev.attempt;
    j["retry_at"] = epoch_ms(ev.retry_at);
  }
  if (!ev.message.empty())
    j["message"] = ev.message;
  return j.dump();
}

/// A line for stderr, never with the value.
void log_event(const keeper_event& ev) {
  std::cerr << "tlm keep: " << to_string(ev.kind);
  if (ev.lease)
    std::cerr << " lease " << ev.lease->id << " until "
              << wire::format_time(ev.lease->expires);
  if (ev.error)
    std::cerr << " (" << to_string(ev.error->code) << ", attempt " << ev.attempt
              << ", next try " << wire::format_time(ev.retry_at) << ")";
  if (!ev.message.empty())
    std::cerr << ": " << ev.message;
  std::cerr << '\n';
}

bool changes_value(keeper_event_kind k) {
  return k == keeper_event_kind::obtained || k == keeper_event_kind::adopted
         || k == keeper_event_kind::exchanged
         || k == keeper_event_kind::replaced;
}

void add_keep_flags(CLI::App& cmd, keep_flags& f) {
  f.create.add_to(cmd);
  cmd.add_option("--lease-id", f.lease_id,
                 "keep this existing lease instead of creating one");
  cmd.add_option("--cache", f.cache,
                 "lease cache file shared with restarts and siblings");
  cmd.add_option("--output", f.output,
                 "write each new value to this file (mode 0600)");
  cmd
    .add_option("--env", f.env_var,
                "the command's environment variable for the value")
    ->capture_default_str();
  cmd.add_option("--events", f.events,
                 "append every event as a JSON line, value included, to this "
                 "file ('-': stdout)");
  cmd
    .add_option("--on-change", f.on_change,
                "when the value changes while the command runs: restart it, "
                "or none")
    ->check(CLI::IsMember({"restart", "none"}))
    ->capture_default_str();
  cmd.add_option("--stale", f.stale, "refresh after this fraction of a term")
    ->capture_default_str();
  cmd
    .add_option("--jitter", f.jitter,
                "refresh earlier by up to this fraction of a term, at random")
    ->capture_default_str();
  cmd
    .add_option("--backoff-max-ms", f.backoff_max_ms,
                "longest wait between retries")
    ->capture_default_str();
  cmd
    .add_option("--ready-timeout-ms", f.ready_timeout_ms,
                "give up when there is no lease by then")
    ->capture_default_str();
  cmd.add_flag("--no-revoke", f.no_revoke, "leave the lease alive at exit");
  cmd.add_flag("--no-recreate", f.no_recreate,
               "do not replace a lease that cannot be renewed");
  cmd.add_option("command", f.command,
                 "the command to run (after --), with the value in --env");
}

} // namespace

namespace {

/// One `tlm keep` run.
class keep_session {
public:
  keep_session(const keep_flags& f, client& c) : flags_(f), client_(c) {
  }

  int run() {
    auto opts = options();
    if (!opts)
      return report(opts.error());
    keeper_ = std::make_unique<lease_keeper>(client_, std::move(opts.value()));
    if (auto started = keeper_->start(); !started)
      return report_usage(started.error());
    auto ready = keeper_->wait_ready(
      std::chrono::milliseconds{flags_.ready_timeout_ms});
    if (!ready) {
      keeper_->stop();
      return report(ready.error());
    }
    int code = flags_.command.empty() ? run_printing() : run_command();
    return finish(code);
  }

private:
  static int report_usage(const failure& f) {
    std::cerr << "tlm keep: " << f.message << '\n';
    return exit_usage;
  }

  result<keeper_options> options() {
    keeper_options o;
    auto req = flags_.create.build();
    if (!req)
      return req.error();
    o.create = std::move(req.value());
    o.timing.stale_fraction = flags_.stale;
    o.timing.jitter_fraction = flags_.jitter;
    o.timing.backoff_max = std::chrono::milliseconds{flags_.backoff_max_ms};
    o.timing.backoff_base = std::min(o.timing.backoff_base,
                                     o.timing.backoff_max);
    o.recreate = !flags_.no_recreate;
    o.revoke_on_stop = !flags_.no_revoke;
    o.cache_file = flags_.cache;
    if (!flags_.lease_id.empty()) {
      auto existing = client_.get_lease(flags_.lease_id);
      if (!existing)
        return failure{existing.error().code, "cannot keep lease "
                                                + flags_.lease_id + ": "
                                                + existing.error().message};
      o.existing = std::move(existing.value());
    }
    if (!flags_.events.empty() && flags_.events != "-") {
      events_file_.open(flags_.events, std::ios::app);
      if (!events_file_)
        return failure{errc::cache_error,
                       "cannot open the events file " + flags_.events};
    }
    o.watcher = [this](const keeper_event& ev) { on_event(ev); };
    return o;
  }

  /// On the keeper's thread: log it, write the events line, queue it.
  void on_event(const keeper_event& ev) {
    log_event(ev);
    if (!flags_.events.empty()) {
      std::lock_guard guard{out_mtx_};
      auto& out = flags_.events == "-" ? std::cout : events_file_;
      out << event_line(ev) << std::endl;
    }
    queue_.push(ev);
  }

  /// Writes a new value where the user wants it (stdout or --output).
  bool publish(const std::string& value) {
    if (!flags_.output.empty()) {
      auto written = write_file_atomically(flags_.output, value + "\n");
      if (!written) {
        report(written.error());
        return false;
      }
    } else if (flags_.command.empty() && flags_.events != "-") {
      std::lock_guard guard{out_mtx_};
      std::cout << value << std::endl;
    }
    return true;
  }

  int run_printing();
  int run_command();
  int finish(int code);
  pid_t spawn(const std::string& value);
  int stop_child(pid_t child);

  const keep_flags& flags_;
  client& client_;
  std::unique_ptr<lease_keeper> keeper_;
  event_queue queue_;
  std::mutex out_mtx_;
  std::ofstream events_file_;
  std::string published_;
};

/// Print (or write) each new value until a signal or the lease is lost.
int keep_session::run_printing() {
  while (received_signal == 0) {
    for (auto& ev : queue_.take()) {
      if (ev.kind == keeper_event_kind::lost)
        return exit_lost;
      if (changes_value(ev.kind) && ev.lease && ev.lease->value != published_) {
        if (!publish(ev.lease->value))
          return exit_usage;
        published_ = ev.lease->value;
      }
    }
    ::usleep(50 * 1000);
  }
  return exit_ok;
}

/// Exit status of a child as a shell reports it.
int status_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return exit_internal;
}

/// The environment for the command: ours, with the value in --env.
std::vector<std::string> command_env(const std::string& var,
                                     const std::string& value) {
  std::vector<std::string> env;
  auto prefix = var + "=";
  for (char** e = environ; *e != nullptr; ++e)
    if (std::string_view{*e}.substr(0, prefix.size()) != prefix)
      env.emplace_back(*e);
  env.push_back(prefix + value);
  return env;
}

pid_t keep_session::spawn(const std::string& value) {
  if (!publish(value))
    return -1;
  published_ = value;
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  auto env = command_env(flags_.env_var, value);
  std::vector<char*> envp, argv;
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& arg : flags_.command)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::string cannot = "tlm keep: cannot run " + flags_.command[0] + "\n";
  pid_t pid = ::fork();
  if (pid != 0)
    return pid;
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(sig, &dfl, nullptr);
  ::execvpe(argv[0], argv.data(), envp.data());
  auto ignored = ::write(2, cannot.data(), cannot.size());
  (void)ignored;
  ::_exit(127);
}

/// SIGTERM, then SIGKILL after 10 s; returns the child's exit code.
int keep_session::stop_child(pid_t child) {
  ::kill(child, SIGTERM);
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(child, &status, WNOHANG) == child)
      return status_code(status);
    ::usleep(50 * 1000);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  return status_code(status);
}

/// Run the command until it exits; restart it when the value changes.
int keep_session::run_command() {
  auto first = keeper_->current();
  pid_t child = first ? spawn(first->value) : -1;
  if (child < 0)
    return exit_usage;
  bool forwarded = false;
  for (;;) {
    if (int sig = received_signal; sig != 0 && !forwarded) {
      ::kill(child, sig); // the command decides how to end
      forwarded = true;
    }
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child)
      return status_code(status);
    for (auto& ev : queue_.take()) {
      if (ev.kind == keeper_event_kind::lost) {
        stop_child(child);
        return exit_lost;
      }
      bool changed = changes_value(ev.kind) && ev.lease
                     && ev.lease->value != published_;
      if (changed && flags_.on_change == "restart" && !forwarded) {
        stop_child(child);
        child = spawn(ev.lease->value);
        if (child < 0)
          return exit_usage;
      } else if (changed && !flags_.output.empty()) {
        publish(ev.lease->value);
        published_ = ev.lease->value;
      }
    }
    ::usleep(50 * 1000);
  }
}

/// Stops the keeper, revoking unless told not to. The command's own
/// failure wins over a failed revocation.
int keep_session::finish(int code) {
  auto revoked = keeper_->stop();
  if (!revoked) {
    int revoke_code = report(revoked.error());
    return code != exit_ok ? code : revoke_code;
  }
  if (!flags_.output.empty() && !flags_.no_revoke)
    ::unlink(flags_.output.c_str()); // its value is dead now
  if (!revoked->confirmed) {
    std::cerr << "tlm keep: revocation pending: " << revoked->message << '\n';
    return code != exit_ok ? code : exit_pending;
  }
  return code;
}

} // namespace

void add_keep_command(CLI::App& app, app_state& st) {
  auto* cmd = app.add_subcommand(
    "keep",
    "keep a lease alive: print each new value, write it to --output, or run "
    "a command with it in --env until the command exits; revoke at the end");
  auto flags = std::make_shared<keep_flags>();
  add_keep_flags(*cmd, *flags);
  cmd->callback([&st, flags] {
    int code = exit_ok;
    auto c = connect(st, code);
    if (!c) {
      st.exit_code = code;
      return;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
      ::sigaction(sig, &sa, nullptr);
    keep_session session{*flags, *c};
    st.exit_code = session.run();
  });
}

} // namespace tlm::inline client_api::cli
