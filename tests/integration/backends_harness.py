"""Helpers for the cloud-backend end-to-end tests (test_backends_e2e.py):
one ``BackendEnv`` per backend type that knows how to configure tlmd for a
running server and how to ask THAT server (never tlmd) whether a leased
credential works and whether the user / authorization still exists.

    env = V1Env(influxd1, secrets_dir)
    cfg = write_tlmd_config(tmp_path, env.config())
    d = tlmd_factory(config=cfg)
    lease = d.api("tcp").create(ttl=2000, backend=env.name)
    env.works(lease)      # True: the credential is accepted by the server
    env.listed(lease)     # True: SHOW USERS / ACL USERS / fake state has it

``works`` answers False only on the server's own rejection (401, WRONGPASS);
anything else (e.g. the server is down) raises, so a test never mistakes an
outage for a revocation.
"""

import http.client
import json
import os
import re
import secrets
import signal
import socket
import time
from pathlib import Path

import servers.influxdb1
import servers.redis
from servers import RedisAuthError, RedisReplyError

HEX16_RE = re.compile(r"^[0-9a-f]{16}$")
PROBE_TIMEOUT = 5.0


def write_secret(path, text):
    """A one-line secret file, mode 0600; returns the path as str."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return str(path)


def write_tlmd_config(directory, backends, default_backend="local", name="tlmd.json",
                      **extra):
    """A tlmd JSON config with these backends (a ``local`` one is added
    unless present); returns its path.  Flags given to tlmd (the harness's
    --storage, --http-port 0 ...) still override it."""
    backends = dict(backends)
    backends.setdefault("local", {"type": "local"})
    doc = {"default_backend": default_backend, "min_ttl_ms": 1000,
           "backends": backends, **extra}
    path = Path(directory) / name
    path.write_text(json.dumps(doc, indent=2))
    return path


def split_user_password(value):
    user, sep, password = value.partition(":")
    assert sep and user and password, f"lease value is not user:password: {value[:12]}..."
    return user, password


class BackendEnv:
    """What the tests need to know about one backend under test."""

    #: name of the backend in tlmd's config (and in create requests)
    name = None
    #: options a client may not pass, and a word the error must contain
    bad_options = None
    bad_options_says = None

    def settings(self, **overrides):
        raise NotImplementedError

    def config(self, **overrides):
        return {self.name: self.settings(**overrides)}

    def check_lease(self, lease):
        """Backend-specific shape checks of a fresh lease (with value)."""
        raise NotImplementedError

    def works(self, lease):
        """True if the server accepts the credential, False if it rejects
        it.  A probe that straddles a revocation (e.g. the write passes,
        the query right after is refused) is repeated once."""
        for attempt in range(2):
            verdict = self._probe(lease)
            if verdict is not None:
                return verdict
        raise AssertionError(f"{self.name}: the server answered inconsistently "
                             f"twice about lease {lease['id']}")

    def _probe(self, lease):
        """True / False, or None for a mixed (racing) answer."""
        raise NotImplementedError

    def listed(self, lease):
        return lease["backend_id"] in self.server_credentials()

    def server_credentials(self):
        """Ids of the credentials tlmd made that the server lists now
        (authorization ids marked tlm:..., or user names tlm_...)."""
        raise NotImplementedError

    def stop_server(self):
        raise NotImplementedError

    def start_server(self):
        raise NotImplementedError

    def server_running(self):
        raise NotImplementedError

    def reset(self):
        """Back to a healthy, running server (between tests)."""
        self.thaw()
        if not self.server_running():
            self.start_server()

    def freeze(self):
        """Make the server take requests but not answer them (until thaw)."""
        raise NotImplementedError

    def thaw(self):
        """Undo freeze(): requests taken meanwhile are carried out."""
        raise NotImplementedError

    def request_waiting(self):
        """While frozen: True once a request has reached the server."""
        raise NotImplementedError

    def remove_credential(self, backend_id):
        """Delete a credential as the admin (cleanup of orphans)."""
        raise NotImplementedError

    def secret_values(self):
        """Admin secrets that must never appear in tlmd's answers or logs."""
        return []


# ---------------------------------------------------------------------------
# InfluxDB 2.x (the fake)
# ---------------------------------------------------------------------------

class V2Env(BackendEnv):
    name = "v2"
    bad_options = {"permissions": [{"action": "read",
                                    "resource": {"type": "no-such-type"}}]}
    bad_options_says = "unknown resource type"

    def __init__(self, fake, secrets_dir):
        self.fake = fake
        self.token_file = write_secret(Path(secrets_dir) / "v2-admin-token",
                                       fake.admin_token)

    def settings(self, **overrides):
        s = {"type": "influxdb", "url": self.fake.url, "token_file": self.token_file,
             "org": self.fake.org_name, "timeout_ms": 2000}
        s.update(overrides)
        return s

    def _request(self, method, path, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.fake.port,
                                          timeout=PROBE_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def state(self):
        """GET /_fake/state (the fake's own view, unaffected by faults)."""
        status, raw = self._request("GET", "/_fake/state")
        assert status == 200, (status, raw[:300])
        return json.loads(raw)

    def set_fault(self, mode, **kw):
        self.fake.set_fault(mode, **kw)

    def authorization(self, lease):
        for a in self.fake.authorizations():
            if a["id"] == lease["backend_id"]:
                return a
        return None

    def check_lease(self, lease):
        assert HEX16_RE.match(lease["backend_id"]), lease["backend_id"]
        assert len(lease["value"]) == 88 and lease["value"].endswith("=="), \
            "value is not an InfluxDB token"
        auth = self.authorization(lease)
        assert auth is not None, "the fake has no such authorization"
        assert auth["token"] == lease["value"]
        assert auth["description"] == f"tlm:{lease['id']}", auth["description"]
        assert auth["orgID"] == self.fake.org_id
        assert auth["status"] == "active"
        assert auth["permissions"], auth

    def _probe(self, lease):
        status, raw = self._request(
            "GET", f"/api/v2/authorizations/{lease['backend_id']}",
            {"Authorization": f"Token {lease['value']}"})
        if status == 200:
            assert json.loads(raw)["id"] == lease["backend_id"]
            return True
        assert status == 401, f"unexpected answer to the leased token: {status} {raw[:200]!r}"
        return False

    def server_credentials(self):
        return {a["id"] for a in self.state()["authorizations"]
                if a["description"].startswith("tlm:")}

    def freeze(self):
        # the fake carries out each request, then holds the answer back
        log = self.fake.requests()
        self._log_mark = log[-1] if log else None
        self.fake.set_fault("hang", process_first=True)

    def request_waiting(self):
        log = self.fake.requests()
        for i in range(len(log) - 1, -1, -1):
            if log[i] is self._log_mark:
                log = log[i + 1:]
                break
        return any(r["status"] == "hang" for r in log)

    def thaw(self):
        self.fake.clear_fault()

    def secret_values(self):
        return [self.fake.admin_token]

    def remove_credential(self, backend_id):
        status, raw = self._request("DELETE", f"/api/v2/authorizations/{backend_id}",
                                    {"Authorization": f"Token {self.fake.admin_token}"})
        assert status in (204, 404), (status, raw[:200])

    def stop_server(self):
        self.fake.stop()

    def start_server(self):
        self.fake.start()

    def server_running(self):
        return self.fake.running

    def reset(self):
        super().reset()
        self.fake.clear_fault()


class _RealServerEnv(BackendEnv):
    """Freezing a real server: SIGSTOP.  The kernel still accepts
    connections and buffers requests; after SIGCONT the server carries them
    out, even for clients that have gone meanwhile."""

    srv = None
    _frozen = False

    def freeze(self):
        os.kill(self.srv.proc.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self):
        if self._frozen:
            if self.srv.is_running():
                os.kill(self.srv.proc.pid, signal.SIGCONT)
            self._frozen = False

    def request_waiting(self):
        return unread_bytes_at(self.srv.port) > 0


def unread_bytes_at(port):
    """Bytes received but not yet read by the process listening on
    127.0.0.1:port, summed over its connections (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[3] == "01":      # ESTABLISHED
                total += int(fields[4].split(":")[1], 16)      # rx_queue
    return total


# ---------------------------------------------------------------------------
# InfluxDB 1.x (real influxd)
# ---------------------------------------------------------------------------

class V1Env(_RealServerEnv):
    name = "v1"
    bad_options = {"privilege": "OWN"}
    bad_options_says = "privilege"

    def __init__(self, srv, secrets_dir):
        self.srv = srv
        self.password_file = srv.write_password_file(Path(secrets_dir) / "v1-admin-password")

    def settings(self, **overrides):
        s = {"type": "influxdb1", "url": self.srv.url, "admin_user": self.srv.admin_user,
             "admin_password_file": self.password_file,
             "default_database": self.srv.database, "default_privilege": "ALL",
             "timeout_ms": 5000}
        s.update(overrides)
        return s

    def check_lease(self, lease):
        assert lease["backend_id"] == f"tlm_{lease['id']}", lease["backend_id"]
        user, password = split_user_password(lease["value"])
        assert user == lease["backend_id"]
        assert len(password) >= 16
        grants = self.srv.grants(user)
        assert grants.get(self.srv.database) == "ALL PRIVILEGES", grants

    def _probe(self, lease):
        user, password = split_user_password(lease["value"])
        w = self.srv.write(self.srv.database, f"tlm_probe,lease={lease['id']} v=1",
                           user, password)
        q, body = self.srv.query("SELECT count(v) FROM tlm_probe", user, password,
                                 db=self.srv.database)
        if w == 204 and q == 200:
            assert not (isinstance(body, dict) and body.get("error")), body
            return True
        # 403: influxd found the user but no privilege any more, as it
        # answers while a DROP USER is under way: refused all the same.
        if w in (401, 403) and q in (401, 403):
            return False
        assert {w, q} <= {204, 200, 401, 403}, \
            f"unexpected answers to the leased user: write {w}, query {q} {body}"
        return None

    def server_credentials(self):
        return {u for u in self.srv.users() if u.startswith("tlm_")}

    def stored_credentials(self):
        """While influxd is stopped: the tlm_ users in its meta store on disk
        (meta/meta.db, a protobuf snapshot of all users that influxd rewrites
        on every change; names are stored as plain bytes).  The database's
        own name, which may start with tlm_ too, is left out."""
        assert not self.server_running(), "ask SHOW USERS while influxd runs"
        data = (self.srv.dir / "meta" / "meta.db").read_bytes()
        names = {m.decode() for m in re.findall(rb"tlm_[A-Za-z0-9_-]+", data)}
        return names - {self.srv.database}

    def remove_credential(self, backend_id):
        if backend_id in self.srv.users():
            self.srv.drop_user(backend_id)

    def stop_server(self):
        self.srv.stop()

    def start_server(self):
        self.srv.start()

    def server_running(self):
        return self.srv.is_running()

    def secret_values(self):
        return [self.srv.admin_password]


# ---------------------------------------------------------------------------
# Redis ACL (real redis-server)
# ---------------------------------------------------------------------------

class RedisEnv(_RealServerEnv):
    name = "redis"
    bad_options = {"key_pattern": "a b"}
    bad_options_says = "key_pattern"

    def __init__(self, srv, secrets_dir):
        self.srv = srv
        self.password_file = srv.write_password_file(Path(secrets_dir) / "redis-admin-password")

    def settings(self, **overrides):
        s = {"type": "redis_acl", "host": self.srv.host, "port": self.srv.port,
             "admin_user": self.srv.admin_user,
             "admin_password_file": self.password_file,
             "default_key_pattern": "tlm:*", "default_categories": ["read", "write"],
             "timeout_ms": 2000}
        s.update(overrides)
        return s

    def check_lease(self, lease):
        assert lease["backend_id"] == f"tlm_{lease['id']}", lease["backend_id"]
        user, password = split_user_password(lease["value"])
        assert user == lease["backend_id"]
        assert len(password) >= 16
        # the user is confined to tlm:* and read/write commands
        with self.srv.connect(user, password, timeout=PROBE_TIMEOUT) as c:
            err = c.call("SET", "other:k", "v", raise_errors=False)
            assert isinstance(err, RedisReplyError) and err.code == "NOPERM", err
            err = c.call("CONFIG", "GET", "port", raise_errors=False)
            assert isinstance(err, RedisReplyError) and err.code == "NOPERM", err

    def _probe(self, lease):
        user, password = split_user_password(lease["value"])
        try:
            conn = self.srv.connect(user, password, timeout=PROBE_TIMEOUT)
        except RedisAuthError as e:
            assert e.code == "WRONGPASS", str(e)
            return False
        with conn:
            key = f"tlm:probe:{secrets.token_hex(4)}"
            try:
                assert conn.call("SET", key, "v") == "OK"
                assert conn.call("GET", key) == "v"
            except ConnectionError:
                return None   # ACL DELUSER closes the deleted user's connections
        return True

    def server_credentials(self):
        return {u for u in self.srv.acl_users() if u.startswith("tlm_")}

    def remove_credential(self, backend_id):
        self.srv.command("ACL", "DELUSER", backend_id)

    def stop_server(self):
        self.srv.stop()

    def start_server(self):
        self.srv.start()

    def server_running(self):
        return self.srv.is_running()

    def secret_values(self):
        return [self.srv.admin_password]
