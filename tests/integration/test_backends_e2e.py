"""End-to-end tests of the three remote cloud backends through the real tlmd:

* ``v2``    type ``influxdb``:  the InfluxDB 2.x fake (tests/fakes), in process;
* ``v1``    type ``influxdb1``: a real influxd 1.6.7 (tests/servers);
* ``redis`` type ``redis_acl``: a real redis-server (tests/servers).

Whether a leased credential works is always asked of the server itself
(backends_harness.py), never of tlmd.  Servers are module-scoped; tests
that stop one or inject a fault put it back (the ``env`` fixture also does
so at teardown).  Every test starts its own tlmd(s).

Regression tests pin three bugs these tests found and that are fixed:
a dead pooled connection after an idle server restart; a create that
timed out in tlmd but completed at the server (its intent is now kept and
reconciled); and 'database not found' on influxdb1 as invalid_request.
"""

import signal
import threading
import time

import pytest

from backends_harness import (RedisEnv, V1Env, V2Env, write_secret,
                              write_tlmd_config)
from tlmd_harness import (assert_failure, assert_revocation_pending,
                          assert_success, now_ms, parse_ts, sleep_until_ms,
                          wait_until)

BACKENDS = ["v2", "v1", "redis"]

#: tlmd revokes an expired lease at its backend "within ~1 s"; polls give
#: it this long before failing.
REVOKE_DEADLINE_S = 5.0
#: After a restart tlmd first loads its leases, then revokes the expired ones.
RESTART_REVOKE_DEADLINE_S = 5.0
#: Failed revocations are retried after a random wait up to
#: retry_base_ms * 2^attempt (capped by retry_max_ms; defaults 1 s and
#: 5 min).  Tests of the retry path make the waits short to stay fast.
FAST_RETRIES = {"retry_base_ms": 200, "retry_max_ms": 1000}
#: tlmd's clock starts from a whole millisecond and may trail the wall
#: clock by under 1 ms (as in test_expiry.py).
CLOCK_SLACK_MS = 10


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("backend-secrets")


def _make_env(request, kind, secrets_dir):
    if kind == "v2":
        return V2Env(request.getfixturevalue("influxdb2_fake_module"), secrets_dir)
    if kind == "v1":
        return V1Env(request.getfixturevalue("influxd1_module"), secrets_dir)
    if kind == "redis":
        return RedisEnv(request.getfixturevalue("redis_server_module"), secrets_dir)
    raise ValueError(kind)


def _healthy_env(request, kind, secrets_dir):
    e = _make_env(request, kind, secrets_dir)
    e.reset()
    yield e
    e.reset()


@pytest.fixture(params=BACKENDS)
def env(request, secrets_dir):
    """The backend under test, with its (module-scoped) server running and
    healthy; put back in that state after the test."""
    yield from _healthy_env(request, request.param, secrets_dir)


@pytest.fixture
def named_env(request, secrets_dir):
    """Like env, for tests that parametrize it themselves (indirect=True)."""
    yield from _healthy_env(request, request.param, secrets_dir)


@pytest.fixture
def v2(request, secrets_dir):
    yield from _healthy_env(request, "v2", secrets_dir)


@pytest.fixture
def v1(request, secrets_dir):
    yield from _healthy_env(request, "v1", secrets_dir)


def start_tlmd(tlmd_factory, tmp_path, env, storage="memory", name=None,
               top_level=None, **overrides):
    """tlmd with backends local and env's (settings changed by overrides;
    top_level: more top-level config keys)."""
    cfg = write_tlmd_config(tmp_path, env.config(**overrides),
                            name=f"{name or 'tlmd'}.json", **(top_level or {}))
    return tlmd_factory(config=cfg, storage=storage, name=name)


def create(api, env, ttl, **options):
    opts = {"ttl": ttl, **options}
    lease = api.create(backend=env.name, options=opts)
    assert lease["backend"] == env.name
    return lease


def assert_no_secrets_in(text, env, leases=(), where="tlmd output"):
    for secret in env.secret_values():
        assert secret not in text, f"an admin secret appears in {where}"
    for lease in leases:
        assert lease["value"] not in text, f"a lease value appears in {where}"
        if ":" in lease["value"]:
            password = lease["value"].split(":", 1)[1]
            assert password not in text, f"a leased password appears in {where}"


def wait_rejected(env, lease, timeout, what):
    """Poll the server until it rejects the lease's credential; returns the
    wall-clock time (ms) when the rejection was first seen."""
    wait_until(lambda: not env.works(lease), timeout=timeout, interval=0.05,
               what=f"{env.name}: {what}")
    return now_ms()


# ---------------------------------------------------------------------------
# 1. expiry walkthrough
# ---------------------------------------------------------------------------

def test_expiry_walkthrough(env, transport, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, env)
    api = d.api(transport)
    lease = create(api, env, 2000)
    env.check_lease(lease)
    assert parse_ts(lease["expires"]) - parse_ts(lease["issued"]) == 2000

    # the credential works at the real server, and tlmd knows the lease
    assert env.works(lease)
    assert env.listed(lease)
    got = assert_success(api.get(lease["id"]))["lease"]
    assert got["backend_id"] == lease["backend_id"]
    assert lease["id"] in {l["id"] for l in api.list_all()}

    expires = parse_ts(lease["expires"])
    sleep_until_ms(expires + CLOCK_SLACK_MS)
    # from expires on, the lease is gone at the API ...
    assert_failure(api.get(lease["id"]), "not_found")
    # ... and within about a second the credential is dead at the server
    seen = wait_rejected(env, lease, REVOKE_DEADLINE_S, "credential rejected after expiry")
    print(f"[{env.name}/{transport}] revoked at the server {seen - expires} ms after expiry")
    assert not env.listed(lease), "the user / authorization is still on the server"
    assert_failure(api.get(lease["id"]), "not_found")
    assert lease["id"] not in {l["id"] for l in api.list_all()}
    assert_failure(api.call({"action": "revoke", "token_id": lease["id"]}), "not_found")
    api.close()
    assert_no_secrets_in(d.read_log(), env, [lease], "tlmd's log")


# ---------------------------------------------------------------------------
# 2. manual revoke
# ---------------------------------------------------------------------------

def test_revoke_rejects_at_once(env, transport, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, env)
    api = d.api(transport)
    lease = create(api, env, 60000)
    other = create(api, env, 60000)
    assert lease["backend_id"] != other["backend_id"]
    assert env.works(lease) and env.works(other)

    assert_success(api.call({"action": "revoke", "token_id": lease["id"]}))
    # no polling: once tlmd answers, the server must already refuse it
    assert not env.works(lease), "credential still works right after revoke"
    assert not env.listed(lease)
    assert_failure(api.get(lease["id"]), "not_found")
    assert_failure(api.call({"action": "revoke", "token_id": lease["id"]}), "not_found")
    # the other lease is untouched
    assert env.works(other) and env.listed(other)
    assert_success(api.get(other["id"]))
    assert_success(api.call({"action": "revoke", "token_id": other["id"]}))
    assert not env.works(other)
    api.close()


# ---------------------------------------------------------------------------
# 3. expiry across a restart (SQLite storage)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig,transport_", [(signal.SIGTERM, "tcp"), (signal.SIGKILL, "http")],
                         ids=["SIGTERM", "SIGKILL"])
def test_lease_expiring_while_down_is_revoked_after_restart(env, sig, transport_,
                                                            tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, env, storage=f"sqlite:{tmp_path / 'leases.db'}")
    api = d.api(transport_)
    lease = create(api, env, 3000)
    keeper = create(api, env, 600000)   # must survive the restart untouched
    assert env.works(lease)
    api.close()

    rc = d.stop(sig)
    if sig == signal.SIGTERM:
        assert rc == 0, f"SIGTERM exit status {rc}"
    else:
        assert rc == -signal.SIGKILL, rc
    expires = parse_ts(lease["expires"])
    sleep_until_ms(expires + 300)
    # Nobody is there to revoke it: the credential outlives its lease.  This
    # is what the restart has to repair.
    assert env.works(lease), "the credential died although tlmd was down"
    assert env.listed(lease)

    d.start()
    restarted = now_ms()
    api = d.api(transport_)
    assert_failure(api.get(lease["id"]), "not_found")
    seen = wait_rejected(env, lease, RESTART_REVOKE_DEADLINE_S,
                         "expired credential revoked after restart")
    print(f"[{env.name}/{sig.name}] revoked {seen - restarted} ms after the restart")
    assert not env.listed(lease)
    # the live lease came back and still works
    assert assert_success(api.get(keeper["id"]))["lease"]["backend_id"] == keeper["backend_id"]
    assert env.works(keeper)
    assert_success(api.call({"action": "revoke", "token_id": keeper["id"]}))
    assert not env.works(keeper)
    api.close()


def test_crash_during_create_is_reconciled_after_restart(env, tlmd_factory, tmp_path):
    """tlmd is SIGKILLed while a create waits for the backend, and the server
    makes the credential afterwards: nobody holds it.  The intent record
    stored before the call makes the restarted tlmd find it (by its tlm
    mark) and revoke it."""
    d = start_tlmd(tlmd_factory, tmp_path, env, storage=f"sqlite:{tmp_path / 'leases.db'}")
    api = d.api("tcp")
    keeper = create(api, env, 600000)
    before = env.server_credentials()
    env.freeze()
    try:
        with d.tcp() as c:
            c.send({"action": "create", "backend": env.name, "options": {"ttl": 600000}})
            # the intent is stored, then the request reaches the frozen server
            wait_until(env.request_waiting, timeout=3.0,
                       what="the create to reach the frozen server")
            d.stop(signal.SIGKILL)
    finally:
        env.thaw()
    orphans = wait_until(lambda: env.server_credentials() - before, timeout=3.0,
                         what="the server to make the credential of the killed create")
    assert len(orphans) == 1, orphans
    api.close()

    d.start()
    wait_until(lambda: not (env.server_credentials() & orphans),
               timeout=RESTART_REVOKE_DEADLINE_S,
               what="the restarted tlmd to revoke the orphaned credential")
    api = d.api("tcp")
    assert assert_success(api.get(keeper["id"]))["lease"]["backend_id"] == keeper["backend_id"]
    assert env.works(keeper), "reconciliation revoked a credential that has a lease"
    leases = api.list_all()
    assert [l["id"] for l in leases if l["backend"] == env.name] == [keeper["id"]], leases
    api.close()


def test_timed_out_create_leaves_no_credential(env, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, env, timeout_ms=1000)
    api = d.api("tcp")
    create(api, env, 60000)       # warm up (v2: org id cached)
    before = env.server_credentials()
    env.freeze()
    try:
        r = api.fail({"action": "create", "backend": env.name, "options": {"ttl": 60000}},
                     "backend_unavailable")
    finally:
        env.thaw()
    # The intent is kept and reconciled after twice the backend timeout:
    # whatever the server made late is found by its mark and revoked.
    try:
        wait_until(lambda: not (env.server_credentials() - before), timeout=15,
                   what="tlmd to revoke the credential of the timed-out create "
                        f"(the client got {r['error']}: {r['message']})")
    finally:
        for backend_id in env.server_credentials() - before:
            env.remove_credential(backend_id)
    api.close()


# ---------------------------------------------------------------------------
# 4. error paths
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["error503", "error500", "error429", "refuse"])
def test_v2_faults_are_backend_unavailable(v2, mode, transport, tlmd_factory, tmp_path):
    """Server faults are backend_unavailable; throttling (429) is
    overloaded, so revocations back off without counting an attempt."""
    d = start_tlmd(tlmd_factory, tmp_path, v2)
    api = d.api(transport)
    before = v2.server_credentials()
    v2.set_fault(mode)
    r = api.fail({"action": "create", "backend": "v2", "options": {"ttl": 60000}},
                 "overloaded" if mode == "error429" else "backend_unavailable")
    if mode.startswith("error"):
        assert mode[-3:] in r["message"], r["message"]
    assert v2.server_credentials() == before
    v2.fake.clear_fault()
    lease = create(api, v2, 60000)
    assert v2.works(lease)
    assert_success(api.call({"action": "revoke", "token_id": lease["id"]}))
    assert not v2.works(lease)
    api.close()


def test_backend_outage(env, transport, tlmd_factory, tmp_path):
    """Server down: create answers backend_unavailable; revoke answers the
    distinct outcome revocation_pending (accepted, HTTP 202): the lease is
    dead from then on, never reported revoked before the server confirmed,
    and the revocation finishes in the background once the server is back.
    Meanwhile `list` with state revoking shows the lease, `health` is
    degraded with the failing backend's counts, and the log says once that
    the backend fails and once that it recovered; creates work again."""
    d = start_tlmd(tlmd_factory, tmp_path, env, top_level=FAST_RETRIES)
    api = d.api(transport)
    lease = create(api, env, 60000)
    assert assert_success(api.call({"action": "health"}))["status"] == "ok"
    env.stop_server()
    try:
        t0 = time.monotonic()
        api.fail({"action": "create", "backend": env.name, "options": {"ttl": 60000}},
                 "backend_unavailable")
        r = assert_revocation_pending(
            api.call({"action": "revoke", "token_id": lease["id"]}))
        assert time.monotonic() - t0 < 4.0, "a refused connection should fail fast"
        assert_no_secrets_in(r["message"], env, [lease], "the message")
        assert env.name in r["message"], r
        # asked again: the same outcome, not a not_found
        assert_revocation_pending(api.call({"action": "revoke", "token_id": lease["id"]}))
        # the revoke was asked for: the lease is dead at the API already...
        api.fail({"action": "get", "token_id": lease["id"]}, "not_found")
        # ...but shown as a revocation under way, without its value
        listed = assert_success(api.call({"action": "list", "state": "revoking"}))["leases"]
        assert [(x["id"], x["state"]) for x in listed] == [(lease["id"], "revoking")]
        assert "value" not in listed[0]
        assert assert_success(api.call({"action": "list"}))["leases"] == []
        h = wait_until(lambda: (lambda h: h if h["backends"][env.name]["failed_attempts"] >= 2
                                else None)(assert_success(api.call({"action": "health"}))),
                       timeout=10, what="the background retries to fail again")
        assert h["status"] == "degraded", h
        failing = h["backends"][env.name]
        assert failing["status"] == "failing" and failing["retrying"] == 1, h
        assert failing["last_error"], h
        assert_no_secrets_in(failing["last_error"], env, [lease], "health")
        assert h["backends"]["local"]["status"] == "ok", h
        # the local backend does not care
        api.create(ttl=60000)
    finally:
        env.start_server()
    wait_until(lambda: not env.works(lease), timeout=10,
               what="the background revocation to finish once the server is back")
    wait_until(lambda: assert_success(api.call({"action": "health"}))["status"] == "ok",
               timeout=10, what="health to be ok again")
    assert assert_success(api.call({"action": "list", "state": "revoking"}))["leases"] == []
    log = d.read_log()
    assert log.count(f"backend '{env.name}' fails to revoke tokens") == 1, log
    recovered = [l for l in log.splitlines()
                 if f"backend '{env.name}' revokes tokens again" in l]
    assert len(recovered) == 1 and "failed attempts" in recovered[0], log
    new = create(api, env, 60000)
    assert env.works(new)
    assert_success(api.call({"action": "revoke", "token_id": new["id"]}))
    assert not env.works(new)
    api.close()


def _restart_server_while_idle(env):
    """Stop and start the server with no tlmd request in between: tlmd's
    pooled admin connection to the old process is then dead."""
    env.stop_server()
    env.start_server()


def test_create_after_idle_server_restart(env, request, tlmd_factory, tmp_path):
    """The server restarts while tlmd is idle: the next create must work,
    not fail on the dead pooled connection to the old server process."""
    d = start_tlmd(tlmd_factory, tmp_path, env)
    api = d.api("tcp")
    first = create(api, env, 60000)      # leaves a kept-alive admin connection
    _restart_server_while_idle(env)
    r = api.call({"action": "create", "backend": env.name, "options": {"ttl": 60000}})
    assert r.get("result") == "success", \
        f"first create after an idle restart of the {env.name} server: {r}"
    assert env.works(r["lease"])
    for lease in (first, r["lease"]):
        assert_success(api.call({"action": "revoke", "token_id": lease["id"]}))
    api.close()


def test_revoke_after_idle_server_restart(env, request, tlmd_factory, tmp_path):
    """Same for a client's revoke: it must not fail (and leave the
    credential working) because of a dead pooled connection."""
    d = start_tlmd(tlmd_factory, tmp_path, env)
    api = d.api("tcp")
    lease = create(api, env, 60000)
    _restart_server_while_idle(env)
    r = api.call({"action": "revoke", "token_id": lease["id"]})
    assert r.get("result") == "success", \
        f"first revoke after an idle restart of the {env.name} server: {r}"
    assert not env.works(lease)
    api.close()


def test_expiry_during_outage_is_retried(env, tlmd_factory, tmp_path):
    """A lease that expires while its server is down is dead at the API at
    once and revoked at the server once it is back (retries)."""
    d = start_tlmd(tlmd_factory, tmp_path, env, top_level=FAST_RETRIES)
    api = d.api("tcp")
    lease = create(api, env, 1000)
    env.stop_server()
    try:
        expires = parse_ts(lease["expires"])
        sleep_until_ms(expires + 1200)       # a few failed revocation attempts
        assert_failure(api.get(lease["id"]), "not_found")
        assert lease["id"] not in {l["id"] for l in api.list_all()}
    finally:
        env.start_server()
    back = now_ms()
    # the user survived the outage, then the retry removes it
    seen = wait_rejected(env, lease, REVOKE_DEADLINE_S,
                         "expired credential revoked after the outage")
    print(f"[{env.name}] revoked {seen - back} ms after the server came back")
    assert not env.listed(lease)
    api.close()


def test_v2_revocation_retried_after_5xx(v2, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, v2, top_level=FAST_RETRIES)
    api = d.api("http")
    lease = create(api, v2, 1000)
    v2.set_fault("error503", count=2, method="DELETE")
    seen = wait_rejected(v2, lease, REVOKE_DEADLINE_S, "revocation after two 503s")
    deletes = [r for r in v2.fake.requests()
               if r["method"] == "DELETE" and lease["backend_id"] in r["path"]]
    assert [r["status"] for r in deletes] == [503, 503, 204], deletes
    print(f"[v2] revoked {seen - parse_ts(lease['expires'])} ms after expiry, after two 503s")
    api.close()


@pytest.mark.parametrize("named_env,setting,named", [
    ("v2", "token_file", ["backends.v2.token_file"]),
    ("v1", "admin_password_file", ["backends.v1.admin_user", "admin_password_file"]),
    ("redis", "admin_password_file", ["backends.redis.admin_user", "admin_password_file"]),
], ids=["v2", "v1", "redis"], indirect=["named_env"])
def test_wrong_admin_secret_is_backend_error(named_env, setting, named, transport,
                                             tlmd_factory, tmp_path):
    """The admin secret file holds a wrong secret: the server rejects tlmd's
    own credentials, which is backend_error naming the setting to fix."""
    env = named_env
    wrong_secret = "wrong-" + "x" * 20
    wrong = write_secret(tmp_path / "wrong-secret", wrong_secret)
    d = start_tlmd(tlmd_factory, tmp_path, env, **{setting: wrong})
    api = d.api(transport)
    r = api.fail({"action": "create", "backend": env.name, "options": {"ttl": 60000}},
                 "backend_error")
    for words in named:    # the message says which setting to fix
        assert words in r["message"], r["message"]
    assert wrong_secret not in r["message"]
    assert_no_secrets_in(r["message"], env, (), "the error message")
    assert_no_secrets_in(d.read_log(), env, (), "tlmd's log")
    assert wrong_secret not in d.read_log()
    api.close()


def test_bad_client_options_are_invalid_request(env, transport, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, env)
    api = d.api(transport)
    lease = create(api, env, 60000)   # a valid create first (v2: org resolved)
    before = env.server_credentials()
    r = api.fail({"action": "create", "backend": env.name,
                  "options": {"ttl": 60000, **env.bad_options}}, "invalid_request")
    assert env.bad_options_says in r["message"], r["message"]
    r = api.fail({"action": "create", "backend": env.name,
                  "options": {"ttl": 60000, "colour": "blue"}}, "invalid_request")
    assert "colour" in r["message"], r["message"]
    assert env.server_credentials() == before, "a refused create left a credential behind"
    assert env.works(lease)
    assert_success(api.call({"action": "revoke", "token_id": lease["id"]}))
    api.close()


#: A role listing a database influxd does not have, so that the GRANT (not
#: tlmd's role check) is what refuses it.
V1_ROLE_WITH_MISSING_DB = {"default_database": None, "default_privilege": None,
                           "roles": {"app": {"databases": ["tlm_test", "no_such_db"]}}}


def test_v1_unknown_database_leaves_no_user(v1, tlmd_factory, tmp_path):
    """influxd refuses the GRANT (no such database) after CREATE USER
    worked: tlmd must drop the user again (no half-made credential)."""
    d = start_tlmd(tlmd_factory, tmp_path, v1, **V1_ROLE_WITH_MISSING_DB)
    api = d.api("tcp")
    before = v1.server_credentials()
    r = api.call({"action": "create", "backend": "v1",
                  "options": {"ttl": 60000, "database": "no_such_db"}})
    assert r["result"] == "failure", r
    assert "no_such_db" in r["message"], r
    assert v1.server_credentials() == before, "half-made user left on influxd"
    api.close()


def test_v1_unknown_database_is_invalid_request(v1, tlmd_factory, tmp_path):
    d = start_tlmd(tlmd_factory, tmp_path, v1, **V1_ROLE_WITH_MISSING_DB)
    d.api("http").fail({"action": "create", "backend": "v1",
                        "options": {"ttl": 60000, "database": "no_such_db"}},
                       "invalid_request")


# ---------------------------------------------------------------------------
# 5. bad backend config: tlmd refuses to start
# ---------------------------------------------------------------------------

def _dummy_settings(kind, secret):
    if kind == "influxdb":
        return {"type": "influxdb", "url": "http://127.0.0.1:9", "token_file": secret,
                "org": "acme"}
    if kind == "influxdb1":
        return {"type": "influxdb1", "url": "http://127.0.0.1:9", "admin_user": "admin",
                "admin_password_file": secret, "default_database": "tlm_test"}
    return {"type": "redis_acl", "host": "127.0.0.1", "port": 9, "admin_user": "admin",
            "admin_password_file": secret}


BAD_CONFIGS = {
    # id: (backend name, type, change to the settings, key named in the message)
    "v1-unknown-key": ("v1", "influxdb1", {"colour": "blue"}, "backends.v1.colour"),
    "v2-unknown-key": ("v2", "influxdb", {"colour": "blue"}, "backends.v2.colour"),
    "redis-unknown-key": ("redis", "redis_acl", {"colour": "blue"}, "backends.redis.colour"),
    "v2-missing-url": ("v2", "influxdb", {"url": None}, "backends.v2.url"),
    "v1-missing-url": ("v1", "influxdb1", {"url": None}, "backends.v1.url"),
    "v2-bad-url": ("v2", "influxdb", {"url": "ftp://127.0.0.1:9"}, "backends.v2.url"),
    "v2-unreadable-token-file": ("v2", "influxdb", {"token_file": "/nonexistent/admin-token"},
                                 "backends.v2.token_file"),
    "v2-empty-token-file": ("v2", "influxdb", {"token_file": "EMPTY"}, "backends.v2.token_file"),
    "v2-no-org": ("v2", "influxdb", {"org": None}, "backends.v2.org"),
    "v1-unreadable-password-file": ("v1", "influxdb1",
                                    {"admin_password_file": "/nonexistent/pw"},
                                    "backends.v1.admin_password_file"),
    "v1-bad-default-privilege": ("v1", "influxdb1", {"default_privilege": "OWN"},
                                 "backends.v1.default_privilege"),
    "redis-unreadable-password-file": ("redis", "redis_acl",
                                       {"admin_password_file": "/nonexistent/pw"},
                                       "backends.redis.admin_password_file"),
    "redis-bad-key-pattern": ("redis", "redis_acl", {"default_key_pattern": "a b"},
                              "backends.redis.default_key_pattern"),
    "redis-bad-port": ("redis", "redis_acl", {"port": 70000}, "backends.redis.port"),
    "unknown-type": ("x", "influxdb3", {}, "backends.x.type"),
    "timeout-not-int": ("v2", "influxdb", {"timeout_ms": "2s"}, "backends.v2.timeout_ms"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_bad_backend_config_refuses_to_start(case, tlmd_factory, tmp_path):
    name, kind, change, key = BAD_CONFIGS[case]
    secret = write_secret(tmp_path / "secret", "s3cr3t-admin-value")
    empty = tmp_path / "empty"
    empty.write_text("")
    settings = _dummy_settings(kind, secret) if kind != "influxdb3" else {"type": kind}
    for k, v in change.items():
        if v is None:
            settings.pop(k, None)
        else:
            settings[k] = str(empty) if v == "EMPTY" else v
    cfg = write_tlmd_config(tmp_path, {name: settings})
    d = tlmd_factory(start=False, config=cfg)
    rc, err = d.start_expect_failure()
    assert rc != 0
    assert key in err, f"stderr does not name {key}: {err!r}"
    assert "s3cr3t-admin-value" not in err
    assert not d.stdout_lines or all(not l.strip() for l in d.stdout_lines), d.stdout_lines


# ---------------------------------------------------------------------------
# 6. isolation: a hung backend does not hold up the others
# ---------------------------------------------------------------------------

def test_hung_v2_does_not_block_local(v2, transport, tlmd_factory, tmp_path):
    timeout_ms = 2000
    d = start_tlmd(tlmd_factory, tmp_path, v2, timeout_ms=timeout_ms)
    api = d.api(transport)
    create(api, v2, 60000)        # the org id is looked up and cached
    v2.fake.reset()               # empty request log: count this test's hangs only
    v2.set_fault("hang")
    results = {}

    def hung_create(i):
        t0 = time.monotonic()
        r = d.action(transport, {"action": "create", "backend": "v2",
                                 "options": {"ttl": 60000}})
        results[i] = (r, time.monotonic() - t0)

    threads = [threading.Thread(target=hung_create, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(1 for r in v2.fake.requests() if r["status"] == "hang") >= 3,
               timeout=2.0, what="the v2 creates to reach the hung fake")

    worst = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        lease = api.create(ttl=60000)
        worst = max(worst, time.monotonic() - t0)
        assert lease["backend"] == "local"
        assert_success(api.call({"action": "health"}))
    print(f"[{transport}] slowest local create while v2 hangs: {worst * 1000:.1f} ms")
    assert worst < 0.5, f"a local create took {worst:.2f}s while v2 hung"
    assert all(t.is_alive() for t in threads), "a v2 create returned although the fake hangs"

    for t in threads:
        t.join(timeout_ms / 1000 + 5)
    for r, elapsed in results.values():
        assert_failure(r, "backend_unavailable")
        assert timeout_ms / 1000 - 0.2 <= elapsed < timeout_ms / 1000 + 2.0, elapsed
    v2.fake.clear_fault()
    lease = create(api, v2, 60000)
    assert v2.works(lease)
    api.close()
