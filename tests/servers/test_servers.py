"""Self-tests of the real test servers (tests/servers): they start fast on
free loopback ports, credentials work and are revoked at once, and a
stop/start cycle (an outage) keeps ports and users.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/servers
"""

import os
import socket
import time

import pytest

from servers import (Influxd1, PostgresServer, RedisAuthError, RedisReplyError, RedisServer,
                     ServerError, free_ports)
from servers.influxdb1 import result_errors

MAX_START_SECONDS = 5.0


# ---------------------------------------------------------------------------
# InfluxDB 1.x
# ---------------------------------------------------------------------------

def test_influxd1_starts_on_loopback_with_auth(influxd1):
    assert influxd1.is_running()
    assert influxd1.url.startswith("http://127.0.0.1:")
    assert influxd1.start_seconds < MAX_START_SECONDS
    assert influxd1.ping() == 204
    # auth is on: no credentials, wrong credentials
    assert influxd1.query("SHOW DATABASES")[0] == 401
    status, body = influxd1.query("SHOW DATABASES", "admin", "wrong")
    assert (status, body) == (401, {"error": "authorization failed"})
    # the admin sees the test database
    status, body = influxd1.query("SHOW DATABASES", influxd1.admin_user,
                                  influxd1.admin_password)
    assert status == 200 and not result_errors(body)
    names = [v[0] for v in body["results"][0]["series"][0]["values"]]
    assert "tlm_test" in names
    assert influxd1.users() == {"admin": True}
    # config: the RPC port was moved off 8088 too
    assert influxd1.rpc_port != 8088
    assert f'bind-address = "127.0.0.1:{influxd1.rpc_port}"' in \
        influxd1.config_path.read_text()


def test_influxd1_user_lifecycle(influxd1):
    a, ap = influxd1.admin_user, influxd1.admin_password
    db = influxd1.database
    status, body = influxd1.query('CREATE USER "tlm_u1" WITH PASSWORD \'pw-1_x\'', a, ap)
    assert status == 200 and not result_errors(body), body
    status, body = influxd1.query(f'GRANT ALL ON "{db}" TO "tlm_u1"', a, ap)
    assert status == 200 and not result_errors(body), body
    assert influxd1.grants("tlm_u1") == {db: "ALL PRIVILEGES"}

    # InfluxQL errors are 200 with results[i].error
    status, body = influxd1.query('CREATE USER "tlm_u1" WITH PASSWORD \'other\'', a, ap)
    assert status == 200 and result_errors(body) == ["user already exists"]

    # the user can write and read its database
    assert influxd1.write(db, "cpu,host=h1 value=1.5", "tlm_u1", "pw-1_x") == 204
    status, body = influxd1.query('SELECT "value" FROM "cpu"', "tlm_u1", "pw-1_x", db=db)
    assert status == 200 and not result_errors(body), body
    assert body["results"][0]["series"][0]["values"][0][1] == 1.5
    # ... but is no admin
    status, body = influxd1.query("SHOW USERS", "tlm_u1", "pw-1_x")
    assert status == 403 or result_errors(body)

    # DROP USER: 401 at once
    status, body = influxd1.query('DROP USER "tlm_u1"', a, ap)
    assert status == 200 and not result_errors(body), body
    assert influxd1.write(db, "cpu,host=h1 value=2", "tlm_u1", "pw-1_x") == 401
    assert influxd1.query("SHOW DATABASES", "tlm_u1", "pw-1_x") == \
        (401, {"error": "authorization failed"})
    status, body = influxd1.query('DROP USER "tlm_u1"', a, ap)
    assert status == 200 and result_errors(body) == ["user not found"]
    assert influxd1.users() == {"admin": True}


def test_influxd1_stop_start_keeps_ports_and_users(influxd1, tmp_path):
    port, url = influxd1.http_port, influxd1.url
    influxd1.create_user("tlm_keep", "pw", grant_all_on=influxd1.database)
    assert influxd1.stop() == 0                     # clean SIGTERM shutdown
    assert not influxd1.is_running()
    with pytest.raises(OSError):                    # outage: refused
        influxd1.ping()
    influxd1.start()
    assert influxd1.start_seconds < MAX_START_SECONDS
    assert (influxd1.http_port, influxd1.url) == (port, url)
    assert influxd1.write(influxd1.database, "m v=1", "tlm_keep", "pw") == 204
    assert set(influxd1.users()) == {"admin", "tlm_keep"}
    # an abrupt kill keeps users too (meta.db is written on each change)
    influxd1.create_user("tlm_keep2", "pw2")
    influxd1.kill()
    influxd1.start()
    assert set(influxd1.users()) == {"admin", "tlm_keep", "tlm_keep2"}
    assert "InfluxDB starting" in influxd1.log()

    pw_file = influxd1.write_password_file(tmp_path / "secrets" / "influx_admin")
    assert open(pw_file).read() == influxd1.admin_password + "\n"
    assert os.stat(pw_file).st_mode & 0o777 == 0o600


def test_influxd1_start_retries_on_port_clash(tmp_path, monkeypatch):
    # The first pair of "free" ports is taken by someone else: start must
    # notice (influxd exits with "address already in use") and retry.
    import servers.influxdb1 as mod
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    calls = []

    def fake_free_ports(n=1, host="127.0.0.1"):
        calls.append(n)
        ports = free_ports(n, host)
        return [taken] + ports[1:] if len(calls) == 1 else ports

    monkeypatch.setattr(mod, "free_ports", fake_free_ports)
    srv = Influxd1(tmp_path)
    try:
        srv.start()
        assert len(calls) == 2 and srv.http_port != taken
        assert srv.ping() == 204
        assert "address already in use" in srv.log()
    finally:
        srv.close()
        blocker.close()


def test_module_fixtures(influxd1_module, redis_server_module):
    assert influxd1_module.ping() == 204
    assert redis_server_module.command("PING") == "PONG"


def test_influxd1_restart_fails_clearly_when_port_taken(tmp_path):
    srv = Influxd1(tmp_path).start()
    try:
        srv.stop()
        srv.restart_port_wait = 0.5
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", srv.http_port))
        squatter.listen(1)
        try:
            t = time.monotonic()
            with pytest.raises(ServerError, match="taken"):
                srv.start()
            assert time.monotonic() - t < 3
        finally:
            squatter.close()
        srv.start()
        assert srv.ping() == 204
    finally:
        srv.close()


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

def test_redis_starts_on_loopback_with_acl(redis_server):
    r = redis_server
    assert r.is_running() and r.host == "127.0.0.1"
    assert r.start_seconds < MAX_START_SECONDS
    assert r.command("PING") == "PONG"
    # the default user is off: nothing without AUTH
    with pytest.raises(RedisReplyError) as ei:
        r.command("PING", auth=False)
    assert ei.value.code == "NOAUTH"
    with pytest.raises(RedisAuthError) as ei:
        r.command("PING", user="default", password="")
    assert ei.value.code == "WRONGPASS"
    with pytest.raises(RedisAuthError):
        r.command("PING", user=r.admin_user, password="wrong")
    assert sorted(r.acl_users()) == ["admin", "default"]
    assert r.command("CONFIG", "GET", "bind") == ["bind", "127.0.0.1"]
    assert r.command("CONFIG", "GET", "save") == ["save", ""]


def test_redis_acl_user_lifecycle(redis_server):
    r = redis_server
    assert r.command("ACL", "SETUSER", "tlm_x", "on", ">pw", "~tlm:*", "+@all") == "OK"
    assert r.command("SET", "tlm:a", "1", user="tlm_x", password="pw") == "OK"
    assert r.command("GET", "tlm:a", user="tlm_x", password="pw") == "1"
    assert r.command("GET", "tlm:none", user="tlm_x", password="pw") is None
    with pytest.raises(RedisReplyError) as ei:
        r.command("SET", "other:b", "2", user="tlm_x", password="pw")
    assert ei.value.code == "NOPERM"
    reply = r.command("GET", "other:b", user="tlm_x", password="pw", raise_errors=False)
    assert isinstance(reply, RedisReplyError) and reply.code == "NOPERM"
    with pytest.raises(RedisAuthError):
        r.command("PING", user="tlm_x", password="bad")

    # a connection opened before the delete is closed by the server
    conn = r.connect("tlm_x", "pw")
    assert r.command("ACL", "DELUSER", "tlm_x") == 1
    with pytest.raises(RedisAuthError) as ei:
        r.command("GET", "tlm:a", user="tlm_x", password="pw")
    assert ei.value.code == "WRONGPASS"
    assert not r.can_auth("tlm_x", "pw")
    with pytest.raises((OSError, ConnectionError)):
        conn.call("GET", "tlm:a")
    conn.close()
    assert r.command("ACL", "DELUSER", "tlm_x") == 0    # already gone


def test_redis_stop_start_keeps_port_and_acl_users(redis_server):
    r = redis_server
    port = r.port
    r.command("ACL", "SETUSER", "tlm_keep", "on", ">pw", "~tlm:*", "+@all")
    assert r.stop() == 0
    assert not r.is_running()
    with pytest.raises(OSError):
        r.command("PING")
    r.start()
    assert r.start_seconds < MAX_START_SECONDS and r.port == port
    assert r.can_auth("tlm_keep", "pw")              # ACL SAVE'd at stop
    # without saving, users made since the last save are gone
    r.command("ACL", "SETUSER", "tlm_lost", "on", ">pw", "~tlm:*", "+@all")
    r.stop(save_acl=False)
    r.start()
    assert not r.can_auth("tlm_lost", "pw")
    assert r.can_auth("tlm_keep", "pw")
    assert "Ready to accept connections" in r.log()


def test_redis_start_retries_on_port_clash(tmp_path, monkeypatch):
    import servers.redis as mod
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    calls = []

    def fake_free_ports(n=1, host="127.0.0.1"):
        calls.append(n)
        return [taken] if len(calls) == 1 else free_ports(n, host)

    monkeypatch.setattr(mod, "free_ports", fake_free_ports)
    srv = RedisServer(tmp_path)
    try:
        srv.start()
        assert len(calls) == 2 and srv.port != taken
        assert srv.command("PING") == "PONG"
    finally:
        srv.close()
        blocker.close()


def test_two_servers_of_each_kind_coexist(influxd1_factory, redis_server_factory):
    i1, i2 = influxd1_factory(), influxd1_factory()
    r1, r2 = redis_server_factory(), redis_server_factory()
    assert len({i1.http_port, i1.rpc_port, i2.http_port, i2.rpc_port, r1.port, r2.port}) == 6
    assert i1.dir != i2.dir and r1.dir != r2.dir
    assert i2.ping() == 204 and r2.command("PING") == "PONG"
    assert i1.admin_password != i2.admin_password


def test_not_started_factory_server(redis_server_factory, influxd1_factory):
    r = redis_server_factory(start=False)
    i = influxd1_factory(start=False)
    assert not r.is_running() and not i.is_running()
    assert r.port is None and i.http_port is None
    r.start()
    i.start()
    assert r.command("PING") == "PONG" and i.ping() == 204


def test_missing_binary_is_reported_with_the_install_script(tmp_path):
    from servers import ServerNotInstalled
    import servers._common as common
    with pytest.raises(ServerNotInstalled, match="install-test-servers.sh"):
        common.find_binary("influxd-definitely-not-installed")


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def test_postgres_starts_on_loopback_with_passwords_and_restarts(postgres_server):
    srv = postgres_server
    assert srv.start_seconds < 30
    assert srv.conninfo("tlm").startswith("postgresql://admin@127.0.0.1:")
    srv.create_database("tlm")
    srv.sql("CREATE TABLE t(x int); INSERT INTO t VALUES (7)", db="tlm")
    assert srv.sql("SELECT x FROM t", db="tlm") == "7"
    # every login needs the password
    with pytest.raises(ServerError, match="password authentication failed"):
        srv.sql("SELECT 1", password="wrong")
    if os.geteuid() == 0:  # the server runs as the postgres user, not root
        assert srv.sql("SELECT current_setting('data_directory')") == str(srv.data)
        assert os.stat(srv.data).st_uid != 0
    # an outage keeps port and data
    port = srv.port
    srv.stop()
    assert not srv.is_running()
    with pytest.raises(ServerError):
        srv.sql("SELECT 1")
    srv.start()
    assert srv.port == port
    assert srv.sql("SELECT x FROM t", db="tlm") == "7"
