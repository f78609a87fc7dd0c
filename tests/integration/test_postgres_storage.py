"""tlmd on the postgres storage backend, against a real PostgreSQL 15 (one
cluster for the module, a new database per test): leases are kept across
restarts and expire, a second tlmd on the same database shares it, a
start with a bad connection string, an unreachable server or a wrong
password stops with a clear message that shows no password, an outage
of PostgreSQL fails requests with storage_error until it is back (a lease
that expired meanwhile leaves the database after it), and a hung server
(a relay that stops relaying) fails a call and the start in bounded time.
"""

import json
import os
import secrets
import signal
import socket
import threading
import time

import pytest

from tlmd_harness import READY_RE, assert_failure, assert_success, parse_ts, wait_until
# The PostgreSQL fixtures (a cluster per module, a database per test) are
# the multi-instance tests' too.
from multi_harness import database, password_file, pg, stored_ids  # noqa: F401


def pg_tlmd(factory, pg, database, password_file, start=True, **kw):
    return factory(start=start, storage=pg.conninfo(database),
                   args=["--storage-password-file", password_file] + kw.pop("args", []),
                   **kw)


@pytest.mark.parametrize("transport_", ["tcp", "http"])
def test_leases_live_in_postgres_across_restarts(tlmd_factory, pg, database,
                                                 password_file, transport_):
    d = pg_tlmd(tlmd_factory, pg, database, password_file)
    assert READY_RE.match(d.stdout_lines[-1]).group(3).startswith("new:postgresql://")
    api = d.api(transport_)
    leases = [api.create(ttl=600000, tags=["pg", f"n{i}"], renewable=True,
                         meta={"i": i, "u": "ü✓"}, description=f"lease {i}")
              for i in range(7)]
    renewed = api.ok({"action": "renew", "token_id": leases[0]["id"], "ttl": 300000})
    leases[0] = renewed["lease"]
    api.ok({"action": "revoke", "token_id": leases.pop()["id"]})
    assert stored_ids(pg, database) == {x["id"] for x in leases}
    assert {x["id"] for x in api.list_all(page_limit=2, tag="n3")} == {leases[3]["id"]}
    assert len(api.list_all(page_limit=2, tag="pg")) == len(leases)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        api.close()
        d.stop(sig=sig)
        d.start()
        assert not READY_RE.match(d.stdout_lines[-1]).group(3).startswith("new:")
        api = d.api(transport_)
        for lease in leases:
            r = api.get(lease["id"])
            assert_success(r)
            assert r["lease"] == lease, "lease changed across restart"
        assert api.health()["leases"] == len(leases)
        assert {x["id"] for x in api.list_all(page_limit=3)} == {x["id"] for x in leases}
    api.close()


def test_a_short_lease_expires_and_leaves_the_database(tlmd_factory, pg, database,
                                                       password_file):
    d = pg_tlmd(tlmd_factory, pg, database, password_file)
    api = d.api("tcp")
    short = api.create(ttl=1000)
    long = api.create(ttl=600000)
    assert short["id"] in stored_ids(pg, database)
    wait_until(lambda: api.get(short["id"]).get("error") == "not_found", timeout=15,
               what="the short lease to expire")
    wait_until(lambda: short["id"] not in stored_ids(pg, database), timeout=15,
               what="the expired lease's row to be removed")
    assert stored_ids(pg, database) == {long["id"]}
    api.close()


def test_a_second_tlmd_on_the_same_database_shares_it(tlmd_factory, pg, database,
                                                      password_file):
    # Several instances are the point of PostgreSQL storage (the rest is in
    # test_multi_instance.py): the second one starts and serves the first's
    # leases, also after the first has stopped.
    first = pg_tlmd(tlmd_factory, pg, database, password_file)
    lease = first.api("tcp").create(ttl=600000)
    second = pg_tlmd(tlmd_factory, pg, database, password_file)
    assert "shared storage: this is instance" in second.read_log()
    assert second.api("tcp").get(lease["id"])["lease"] == lease
    first.stop()
    assert_success(second.api("tcp").get(lease["id"]))
    assert pg.sql("SELECT count(*) FROM instances", db=database).strip() == "1"


def write_config(tmp_path, **keys):
    path = tmp_path / f"config-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(keys))
    return path


def refused(tlmd_factory, storage, config=None):
    d = tlmd_factory(start=False, storage=storage, config=config)
    rc, log = d.start_expect_failure()
    assert rc != 0
    return log


def test_a_bad_connection_string_stops_the_start(tlmd_factory):
    log = refused(tlmd_factory, "postgres:host 'unclosed sekrit-value")
    assert "not a valid PostgreSQL connection string" in log, log
    assert "sekrit-value" not in log


def test_a_password_in_the_connection_string_is_refused_and_not_shown(
        tlmd_factory, pg, database):
    uri = f"postgresql://{pg.admin_user}:{pg.admin_password}@127.0.0.1:{pg.port}/{database}"
    log = refused(tlmd_factory, uri)
    assert "contains a password" in log and "storage_password_file" in log, log
    assert pg.admin_password not in log


def test_an_unreachable_server_stops_the_start(tlmd_factory, pg, password_file, tmp_path):
    from servers import free_ports
    port, = free_ports(1)
    config = write_config(tmp_path, storage_password_file=password_file)
    log = refused(tlmd_factory, f"postgresql://admin@127.0.0.1:{port}/tlm", config)
    assert "cannot connect to the PostgreSQL database 'tlm'" in log, log
    assert pg.admin_password not in log


def test_a_wrong_password_stops_the_start(tlmd_factory, pg, database, tmp_path):
    wrong = pg.write_password_file(tmp_path / "wrong", "Wrong-Password-42")
    config = write_config(tmp_path, storage_password_file=wrong)
    log = refused(tlmd_factory, pg.conninfo(database), config)
    assert "password authentication failed" in log, log
    assert "Wrong-Password-42" not in log and pg.admin_password not in log
    missing = write_config(tmp_path, storage_password_file=str(tmp_path / "none"))
    log = refused(tlmd_factory, pg.conninfo(database), missing)
    assert "cannot read the storage password file" in log, log
    empty = write_config(tmp_path, storage_password_file=pg.write_password_file(
        tmp_path / "empty", ""))
    log = refused(tlmd_factory, pg.conninfo(database), empty)
    assert "has an empty first line" in log, log


def test_the_password_can_come_from_pgpassfile(tlmd_factory, pg, database, tmp_path,
                                               monkeypatch):
    path = tmp_path / "pgpass"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"127.0.0.1:{pg.port}:{database}:{pg.admin_user}:{pg.admin_password}\n")
    monkeypatch.setenv("PGPASSFILE", str(path))
    d = tlmd_factory(storage=pg.conninfo(database))
    lease = d.api("http").create(ttl=600000)
    assert stored_ids(pg, database) == {lease["id"]}


def test_an_outage_fails_requests_until_postgres_is_back(tlmd_factory,
                                                         postgres_server_factory,
                                                         tmp_path):
    pg = postgres_server_factory()
    database = pg.create_database("tlm")
    password_file = pg.write_password_file(tmp_path / "pw")
    d = pg_tlmd(tlmd_factory, pg, database, password_file)
    api = d.api("tcp")
    kept = api.create(ttl=600000)
    short = api.create(ttl=1500)
    pg.stop()
    assert_failure(api.call({"action": "create", "options": {"ttl": 600000}}),
                   "storage_error")
    # The outage shows in health, with the database's reason.
    health = assert_success(api.call({"action": "health"}))
    assert health["status"] == "degraded", health
    assert health["storage"]["status"] == "failing", health
    assert health["storage"]["last_error"], health
    # The database is the truth (another instance may have revoked it), so
    # a read fails too, at once, rather than answer from a stale copy.
    assert_failure(api.get(kept["id"]), "storage_error")
    # A lease expires during the outage...
    time.sleep(max(0.0, parse_ts(short["expires"]) / 1000 - time.time()) + 0.5)
    pg.start()
    after = api.create(ttl=600000)
    assert_success(api.get(kept["id"]))
    # ... and is revoked, its row gone, once PostgreSQL is back.
    wait_until(lambda: stored_ids(pg, database) == {kept["id"], after["id"]},
               timeout=30, what="the expired lease's row to be removed after the outage")
    assert_failure(api.get(short["id"]), "not_found")
    health = assert_success(api.call({"action": "health"}))
    assert health["storage"] == {"status": "ok"}, health
    assert d.alive()
    api.close()


class FreezableProxy:
    """A TCP relay to PostgreSQL that can stop relaying while it keeps
    every connection open: a hung server or a lost network, where no TCP
    error ever comes. Connections made after thaw() relay again."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.frozen = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(client)
            if self.frozen.is_set():
                continue  # accepted, never answered
            server = socket.create_connection(self.target)
            self.held.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.frozen.is_set():  # hold the bytes, never send them
                    time.sleep(0.05)
                    if src.fileno() < 0:
                        return
                dst.sendall(data)
        except OSError:
            pass

    def close(self):
        self.frozen.clear()
        self.sock.close()
        for s in self.held:
            s.close()


@pytest.fixture
def proxy(pg):
    p = FreezableProxy(pg.port)
    yield p
    p.close()


def test_a_hung_server_fails_calls_and_the_start_in_bounded_time(
        tlmd_factory, pg, database, password_file, proxy):
    storage = f"postgresql://{pg.admin_user}@127.0.0.1:{proxy.port}/{database}"
    d = tlmd_factory(storage=storage, args=["--storage-password-file", password_file])
    with d.tcp() as c:
        kept = assert_success(c.request({"action": "create", "options": {"ttl": 600000}}))
        proxy.frozen.set()
        # No TCP error ever comes: tlmd's own deadline (12 s) ends the call.
        r = c.request({"action": "create", "options": {"ttl": 600000}}, timeout=60)
        assert_failure(r, "storage_error")
        proxy.frozen.clear()
        # The hung connection was dropped; the next call connects anew.
        after = assert_success(c.request({"action": "create",
                                          "options": {"ttl": 600000}}, timeout=60))
    assert {kept["lease"]["id"], after["lease"]["id"]} <= stored_ids(pg, database)
    d.stop()
    # A server that accepts and never answers: the start ends by
    # connect_timeout (5 s) with a clear message.
    proxy.frozen.set()
    second = tlmd_factory(start=False, storage=storage,
                          args=["--storage-password-file", password_file])
    rc, log = second.start_expect_failure(timeout=60)
    assert rc != 0
    assert "cannot connect to the PostgreSQL database" in log and "timeout" in log, log
