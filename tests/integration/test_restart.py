"""Persistence with SQLite storage across SIGTERM / SIGKILL restarts."""

import signal
import threading

import pytest

from tlmd_harness import (READY_RE, assert_failure, assert_success, check_lease,
                          parse_ts, sleep_until_ms, wait_until)


@pytest.fixture
def sqlite_tlmd(tlmd_factory, tmp_path):
    return tlmd_factory(storage=f"sqlite:{tmp_path / 'leases.db'}")


def _populate(api):
    long_leases = [
        api.create(ttl=600000, tags=["long", f"n{i}"], renewable=bool(i % 2),
                   meta={"i": i, "nested": {"x": [1, "two", None, True]}, "u": "ü✓"},
                   description=f"long lease {i}")
        for i in range(6)
    ]
    short_leases = [api.create(ttl=1000, tags=["short"], meta={"s": i}) for i in range(4)]
    return long_leases, short_leases


def _check_after_restart(api, live, dead, dead_values=()):
    for lease in live:
        r = api.get(lease["id"])
        assert_success(r)
        assert r["lease"] == lease, "lease changed across restart"
    for lease in dead:
        assert_failure(api.get(lease["id"]), "not_found")
    for value in dead_values:
        api.fail({"action": "exchange", "token": value}, "invalid_token")

    expected = {l["id"] for l in live}

    def settled():
        return (api.health()["leases"] == len(live)
                and {l["id"] for l in api.list_all(page_limit=3)} == expected)

    wait_until(settled, timeout=2.0, what="health/list to show exactly the live leases")
    listed = {l["id"]: l for l in api.list_all()}
    for lease in live:
        assert listed[lease["id"]] == {k: v for k, v in lease.items() if k != "value"}


@pytest.mark.parametrize("transport_", ["tcp", "http"])
def test_sigterm_restart_keeps_state(sqlite_tlmd, transport_):
    d = sqlite_tlmd
    api = d.api(transport_)
    long_leases, short_leases = _populate(api)

    # mutate some state before shutting down
    revoked = long_leases.pop()
    api.ok({"action": "revoke", "token_id": revoked["id"]})
    old_value = long_leases[0]["value"]
    long_leases[0] = check_lease(api.ok({"action": "exchange", "token": old_value,
                                         "meta": {"exchanged": 1}})["lease"])
    renewable = next(l for l in long_leases if l["renewable"])
    idx = long_leases.index(renewable)
    long_leases[idx] = api.ok({"action": "renew", "token_id": renewable["id"],
                               "ttl": 900000})["lease"]
    api.close()

    rc = d.stop(signal.SIGTERM)
    assert rc == 0, f"SIGTERM exit code {rc}"
    assert [l for l in d.stdout_lines if l.strip()] and READY_RE.match(d.stdout_lines[0])
    assert len([l for l in d.stdout_lines if l.strip()]) == 1, \
        f"stdout must hold exactly the ready line: {d.stdout_lines}"

    # the short leases expire while tlmd is down
    sleep_until_ms(max(parse_ts(l["expires"]) for l in short_leases) + 20)
    d.start()
    api = d.api(transport_)
    _check_after_restart(api, long_leases, short_leases + [revoked],
                         dead_values=[old_value, revoked["value"]]
                         + [l["value"] for l in short_leases])

    # pre-restart values still exchange after restart
    for lease in long_leases[:3]:
        new = api.ok({"action": "exchange", "token": lease["value"]})["lease"]
        assert new["id"] == lease["id"] and new["value"] != lease["value"]
        assert new["meta"] == lease["meta"]
    api.fail({"action": "exchange", "token": long_leases[0]["value"]}, "invalid_token")
    # renewable leases are still renewable, the others still are not
    for lease in long_leases:
        r = api.call({"action": "renew", "token_id": lease["id"]})
        if lease["renewable"]:
            assert_success(r)
        else:
            assert_failure(r, "not_renewable")
    assert d.stop(signal.SIGTERM) == 0


def test_sigkill_acknowledged_creates_survive(sqlite_tlmd):
    d = sqlite_tlmd
    n = 300
    with d.tcp() as c:
        c.send_many([{"action": "create", "options": {"ttl": 600000}, "tags": ["k"],
                      "meta": {"i": i}, "request_id": i} for i in range(n)])
        leases = [check_lease(assert_success(r)["lease"]) for r in c.recv_many(n, timeout=60)]
        # a revoke and an exchange that were acknowledged must stick too
        assert_success(c.request({"action": "revoke", "token_id": leases[0]["id"]}))
        r = assert_success(c.request({"action": "exchange", "token": leases[1]["value"]}))
        old_value, leases[1] = leases[1]["value"], r["lease"]
    revoked = leases.pop(0)
    d.stop(signal.SIGKILL)

    d.start()
    api = d.api("tcp")
    _check_after_restart(api, leases, [revoked], dead_values=[old_value, revoked["value"]])
    # exchange of pre-kill values still works
    for lease in leases[:5]:
        api.ok({"action": "exchange", "token": lease["value"]})
    api.close()
    d.kill()


def test_sigkill_during_load_keeps_every_acknowledged_create(sqlite_tlmd):
    """Kill tlmd while creates are in flight: every create that got a success
    reply survives; nothing half-written breaks startup."""
    d = sqlite_tlmd
    acked = []
    stop = threading.Event()

    def writer():
        try:
            with d.tcp() as c:
                i = 0
                while not stop.is_set():
                    c.send_many([{"action": "create", "options": {"ttl": 600000},
                                  "meta": {"i": i + k}, "request_id": i + k}
                                 for k in range(20)])
                    for _ in range(20):
                        r = c.recv(timeout=5)
                        if r.get("result") == "success":
                            acked.append(r["lease"])
                    i += 20
        except Exception:
            pass  # the connection dies with the process

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    wait_until(lambda: len(acked) >= 100, timeout=20, what="some acknowledged creates")
    d.stop(signal.SIGKILL)
    stop.set()
    t.join(10)
    snapshot = list(acked)
    assert snapshot

    d.start()
    api = d.api("tcp")
    for lease in snapshot:
        r = api.get(lease["id"])
        assert_success(r)
        assert r["lease"] == lease
    assert api.health()["leases"] >= len(snapshot)
    api.close()


def test_sigterm_with_requests_in_flight(sqlite_tlmd):
    """SIGTERM while a client is pipelining: tlmd exits 0, every reply it
    sent is well-formed, and every acknowledged create survives."""
    d = sqlite_tlmd
    n = 500
    c = d.tcp()
    c.send_many([{"action": "create", "options": {"ttl": 600000}, "request_id": i}
                 for i in range(n)])
    first = c.recv()
    assert first["request_id"] == 0
    d.send_signal(signal.SIGTERM)
    replies = [first]
    try:
        while len(replies) < n:
            replies.append(c.recv(timeout=10))
    except Exception:
        pass  # connection closed by the shutdown
    c.close()
    rc = d.proc.wait(15)
    d.kill()
    assert rc == 0, f"SIGTERM exit code {rc}"
    acked = []
    for i, r in enumerate(replies):
        assert r.get("request_id") == i, "replies out of order"
        if r.get("result") == "success":
            acked.append(r["lease"])
        else:
            # a request refused during shutdown must still be a proper failure
            assert r.get("result") == "failure" and r.get("error"), r
    d.start()
    api = d.api("tcp")
    for lease in acked:
        assert api.get(lease["id"])["lease"] == lease
    api.close()


def test_restart_on_fresh_and_reused_db_without_leases(sqlite_tlmd):
    d = sqlite_tlmd
    api = d.api("http")
    assert api.health()["leases"] == 0
    assert d.stop() == 0
    d.start()
    assert api.health()["leases"] == 0
    lease = api.create(ttl=60000)
    assert d.stop() == 0
    d.start()
    assert api.get(lease["id"])["lease"] == lease


def test_memory_storage_forgets(tlmd_factory):
    d = tlmd_factory(storage="memory")
    api = d.api("http")
    lease = api.create(ttl=60000)
    assert d.stop() == 0
    d.start()
    assert_failure(api.get(lease["id"]), "not_found")
    assert api.health()["leases"] == 0
