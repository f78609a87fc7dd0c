#pragma once

// The domain structs that travel between actors. They are plain data with a
// CAF 0.17 `inspect` each, so CAF can put them into messages.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace tlm {

/// The states a stored lease record can have.
inline constexpr const char* state_active = "active";
inline constexpr const char* state_pending = "pending";
/// A client asked to revoke it; the backend has not confirmed yet.
inline constexpr const char* state_revoking = "revoking";
/// Revocation failed too often (or can never work): still retried, and
/// shown to operators with its last error.
inline constexpr const char* state_irrevocable = "irrevocable";

/// One lease: a secret token at a cloud backend plus the time it may live.
/// Times are milliseconds since the Unix epoch (UTC).
struct lease {
  std::string id;         ///< Assigned by the manager, URL-safe, unique.
  std::string backend;    ///< Name of the configured cloud backend.
  std::string backend_id; ///< The cloud's own id for the token.
  std::string value;      ///< The secret token.
  int64_t ttl_ms = 0;     ///< Length of the current term.
  int64_t issued_ms = 0;
  int64_t expires_ms = 0;
  bool renewable = false;
  std::vector<std::string> tags;
  std::string meta = "{}"; ///< A JSON object, serialized.
  std::string description;
  /// `active`, or `pending`: the intent stored before a remote backend
  /// creates the token, so a crash in between leaves a record to reconcile.
  std::string state = state_active;
  uint32_t attempts = 0;  ///< Failed revocation attempts.
  std::string last_error; ///< The backend's reason, never a secret.
  /// What the token may do, in its service's words (Taler's `readonly`,
  /// `readwrite`); empty: nothing said.
  std::string scope;
  /// When the token was last exchanged; 0: never.
  int64_t last_access_ms = 0;
  /// Stable and increasing with creation (microseconds of the create, or
  /// one more than the previous), for paging by creation (Taler's row_id).
  int64_t row_id = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(caf::meta::type_name("lease"), x.id, x.backend, x.backend_id,
           x.value, x.ttl_ms, x.issued_ms, x.expires_ms, x.renewable, x.tags,
           x.meta, x.description, x.state, x.attempts, x.last_error, x.scope,
           x.last_access_ms, x.row_id);
}

/// How revocations at one backend fare, for `health`.
struct backend_health {
  std::string name;
  /// Leases whose last revocation attempt failed; retried with backoff.
  uint64_t retrying = 0;
  uint64_t irrevocable = 0;
  /// Failed revocation attempts since the backend last confirmed one.
  uint64_t failed_attempts = 0;
  std::string last_error; ///< Of the latest failure, never a secret.

  bool failing() const {
    return retrying > 0 || irrevocable > 0 || failed_attempts > 0;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, backend_health& x) {
  return f(caf::meta::type_name("backend_health"), x.name, x.retrying,
           x.irrevocable, x.failed_attempts, x.last_error);
}

/// What `health` reports.
struct health_report {
  uint64_t live = 0;        ///< Leases a client can use.
  uint64_t irrevocable = 0; ///< Leases whose revocation keeps failing.
  uint64_t quarantined = 0; ///< Stored records that could not be read.
  std::vector<backend_health> backends; ///< Every backend, by name.
  /// Why the storage's last call failed, while it fails; empty when it
  /// works.
  std::string storage_error;

  /// Something needs an operator: a lease that may outlive its lease, a
  /// backend failing revocations, a failing storage, or a stored record
  /// nobody can read.
  bool degraded() const {
    if (irrevocable > 0 || quarantined > 0 || !storage_error.empty())
      return true;
    for (auto& b : backends)
      if (b.failing())
        return true;
    return false;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_report& x) {
  return f(caf::meta::type_name("health_report"), x.live, x.irrevocable,
           x.quarantined, x.backends, x.storage_error);
}

/// What a cloud backend answers for a token it created or knows.
struct cloud_token {
  std::string backend_id;
  std::string value;
  std::string extra = "{}"; ///< Backend-specific fields, a JSON object.
  /// The lease the token was made for: the one `create` was given, or, in
  /// `get_all`, the one read from the token's mark (empty for a token tlmd
  /// did not make).
  std::string lease_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cloud_token& x) {
  return f(caf::meta::type_name("cloud_token"), x.backend_id, x.value, x.extra,
           x.lease_id);
}

/// What the manager asks a cloud backend to create (`atom::create`).
struct token_request {
  std::string lease_id; ///< The backend marks the token with it if it can.
  int64_t ttl_ms = 0;
  std::string options = "{}"; ///< Backend options, a JSON object.
  /// The caller's deadline on the actor clock (`deadline_after`), in
  /// nanoseconds since its epoch; 0: none. A create still queued by then
  /// is refused, never made for nobody.
  int64_t deadline_ns = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_request& x) {
  return f(caf::meta::type_name("token_request"), x.lease_id, x.ttl_ms,
           x.options, x.deadline_ns);
}

/// A one-time token to swap at its backend (cloud `atom::exchange`).
struct token_swap {
  std::string backend_id; ///< The backend's id of the token.
  std::string value;      ///< Its current value, used up by the swap.
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_swap& x) {
  return f(caf::meta::type_name("token_swap"), x.backend_id, x.value);
}

/// A client's exchange of a one-time token (manager `atom::exchange`).
struct exchange_request {
  std::string backend;     ///< Empty: the backend that exchanges tokens.
  std::string value;       ///< The token presented, used up by the exchange.
  std::string meta = "{}"; ///< A JSON Merge Patch for the lease's meta.
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exchange_request& x) {
  return f(caf::meta::type_name("exchange_request"), x.backend, x.value,
           x.meta);
}

/// A client's revoke of one lease (manager `atom::revoke`).
struct revoke_request {
  std::string token_id;
  /// An operator's explicit choice: forget the lease without the
  /// backend's confirmation.
  bool force = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, revoke_request& x) {
  return f(caf::meta::type_name("revoke_request"), x.token_id, x.force);
}

/// Marks an absent ttl in `create_request` and `renew`.
constexpr int64_t use_default_ttl = -1;

/// A client's wish for a new lease, already validated for syntax by the API.
struct create_request {
  std::string backend;              ///< Empty: the configured default.
  int64_t ttl_ms = use_default_ttl; ///< Checked against the ttl bounds.
  std::string options = "{}";       ///< Backend options (JSON object, no ttl).
  bool renewable = false;
  std::vector<std::string> tags;
  std::string meta = "{}";
  std::string description;
  std::string scope; ///< At most `max_scope_bytes`.
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, create_request& x) {
  return f(caf::meta::type_name("create_request"), x.backend, x.ttl_ms,
           x.options, x.renewable, x.tags, x.meta, x.description, x.scope);
}

/// Which leases `list` shows.
enum class list_state : uint8_t {
  visible,     ///< Live and irrevocable leases (the default).
  active,      ///< Live leases.
  revoking,    ///< Revocations under way, also of expired leases.
  irrevocable, ///< Leases whose revocation keeps failing.
};

/// The stored state a `list_state` names ("" for `visible`); CAF prints
/// messages with it.
inline std::string to_string(list_state x) {
  switch (x) {
    case list_state::visible: return "";
    case list_state::active: return state_active;
    case list_state::revoking: return state_revoking;
    case list_state::irrevocable: return state_irrevocable;
  }
  return "";
}

/// A page request for `list`: leases in the storage's stable order, after
/// the position `after` (opaque, from the previous page; empty: start).
struct list_query {
  std::string backend; ///< Empty: any backend.
  std::string tag;     ///< Empty: any tag.
  list_state state = list_state::visible;
  std::string after;
  uint32_t limit = 100;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, list_query& x) {
  return f(caf::meta::type_name("list_query"), x.backend, x.tag, x.state,
           x.after, x.limit);
}

/// Stored leases of one stored state whose `expires_ms` lies in
/// [min_expires_ms, max_expires_ms].
struct state_window {
  std::string state; ///< `state_active`, `state_revoking`, ...
  int64_t min_expires_ms = std::numeric_limits<int64_t>::min();
  int64_t max_expires_ms = std::numeric_limits<int64_t>::max();
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, state_window& x) {
  return f(caf::meta::type_name("state_window"), x.state, x.min_expires_ms,
           x.max_expires_ms);
}

/// What storage lists, in terms it knows (no notion of "live"): leases of
/// a backend and with a tag that fall in any of `windows`, one page after
/// the position `after`.
struct lease_filter {
  std::string backend;               ///< Empty: any backend.
  std::string tag;                   ///< Empty: any tag.
  std::vector<state_window> windows; ///< At most `max_windows`.
  std::string after;
  uint32_t limit = 100;

  /// As many as there are stored states: one window per state suffices.
  static constexpr size_t max_windows = 4;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_filter& x) {
  return f(caf::meta::type_name("lease_filter"), x.backend, x.tag, x.windows,
           x.after, x.limit);
}

/// One page of `list` or `load`; `next_after` is the position to continue
/// from, empty on the last page.
struct lease_page {
  std::vector<lease> leases;
  std::string next_after;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease_page& x) {
  return f(caf::meta::type_name("lease_page"), x.leases, x.next_after);
}

/// Where a bulk revocation stands.
enum class job_state : uint8_t { running, done };

inline std::string to_string(job_state x) {
  return x == job_state::done ? "done" : "running";
}

/// Parses a stored job state; false if it names none.
inline bool parse_job_state(const std::string& text, job_state& out) {
  for (auto x : {job_state::running, job_state::done})
    if (text == to_string(x)) {
      out = x;
      return true;
    }
  return false;
}

/// A bulk revocation (`revoke_prefix`): every lease of a backend and/or
/// with a tag that existed when the job began. Only the filter, the start
/// and the outcome are stored; after a restart the job finds its leases
/// again by the filter and `issued_ms <= created_ms`.
struct revoke_job {
  std::string id;
  std::string backend; ///< Empty: any backend.
  std::string tag;     ///< Empty: any tag.
  int64_t created_ms = 0;
  uint64_t total = 0; ///< Leases matched when the job began.
  job_state state = job_state::running;
  int64_t finished_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, revoke_job& x) {
  return f(caf::meta::type_name("revoke_job"), x.id, x.backend, x.tag,
           x.created_ms, x.total, x.state, x.finished_ms);
}

/// How far a running job has come: counted by the manager, never stored.
struct job_progress {
  uint64_t remaining = 0;   ///< Matched leases not revoked yet.
  uint64_t irrevocable = 0; ///< ... of which revocation keeps failing.
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_progress& x) {
  return f(caf::meta::type_name("job_progress"), x.remaining, x.irrevocable);
}

/// What `revoke_prefix` and `job` answer: the job and its progress.
struct job_status {
  revoke_job job;
  job_progress progress;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_status& x) {
  return f(caf::meta::type_name("job_status"), x.job, x.progress);
}

/// What a client may attach to a lease, and is stored and sent with it on
/// every read, so each part is bounded and so is their sum.
constexpr size_t max_description_bytes = 1024;
constexpr size_t max_scope_bytes = 128;
constexpr size_t max_tags = 64;
constexpr size_t max_tag_bytes = 128;
/// Serialized `meta`, `description` and `tags` together.
constexpr size_t max_client_data_bytes = 64 * 1024;

inline size_t client_data_bytes(const std::string& meta,
                                const std::string& description,
                                const std::vector<std::string>& tags) {
  auto n = meta.size() + description.size();
  for (auto& tag : tags)
    n += tag.size();
  return n;
}

/// The failure for a lease whose client data is too large, or "" if not.
inline std::string client_data_problem(const std::string& meta,
                                       const std::string& description,
                                       const std::vector<std::string>& tags) {
  if (description.size() > max_description_bytes)
    return "description must be at most 1024 bytes";
  if (tags.size() > max_tags)
    return "a lease takes at most 64 tags";
  for (auto& tag : tags)
    if (tag.empty() || tag.size() > max_tag_bytes)
      return "a tag must be 1 to 128 bytes long";
  if (client_data_bytes(meta, description, tags) > max_client_data_bytes)
    return "meta, description and tags must together take at most 65536 "
           "bytes";
  return {};
}

} // namespace tlm
