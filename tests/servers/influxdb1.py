"""A real InfluxDB 1.x server (Debian 12 package ``influxdb``, 1.6.7~rc0) for
tests: loopback only, free ports, all state in one temp dir, auth on.

    srv = Influxd1(tmp_path)        # nothing runs yet
    srv.start()                     # config, influxd, /ping, admin user, db
    srv.query('CREATE USER "u" WITH PASSWORD \\'p\\'', srv.admin_user, srv.admin_password)
    srv.stop(); srv.start()         # outage and recovery: same ports, same data
    srv.close()                     # stop for good (SIGKILL, fast)

Facts this relies on are in shared/reference/influxdb-notes.md.  Python 3
standard library only.
"""

import base64
import http.client
import json
import os
import signal
import time
import urllib.parse
from pathlib import Path

from ._common import (ManagedServer, ServerError, find_binary, free_ports, random_password,
                      read_text, spawn, stop_process, wait_port_free)

START_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
START_ATTEMPTS = 5


def _basic_auth(user, password):
    raw = f"{user}:{password}".encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def quote_ident(name):
    """InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value):
    """InfluxQL string literal in single quotes (escape ' as \\')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def result_errors(body):
    """The InfluxQL errors in a /query JSON body (InfluxQL errors come back
    as HTTP 200 with results[i].error), plus a top-level "error"."""
    if not isinstance(body, dict):
        return []
    errs = []
    if body.get("error"):
        errs.append(body["error"])
    for r in body.get("results", []) or []:
        if isinstance(r, dict) and r.get("error"):
            errs.append(r["error"])
    return errs


class Influxd1(ManagedServer):
    """One influxd 1.x process.  See the module docstring."""

    def __init__(self, base_dir, database="tlm_test", admin_user="admin",
                 admin_password=None, binary=None, name="influxd1"):
        self.binary = binary or find_binary("influxd")
        self.dir = Path(base_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.database = database
        self.admin_user = admin_user
        self.admin_password = admin_password or random_password()
        self.config_path = self.dir / "influxdb.conf"
        self.log_path = self.dir / "influxd.log"
        self.host = "127.0.0.1"
        self.http_port = None
        self.rpc_port = None
        self.proc = None
        self._bootstrapped = False
        self.start_seconds = None   # how long the last start() took
        self.restart_port_wait = 5.0  # s to wait for the ports on a restart

    # -- properties ---------------------------------------------------------

    @property
    def port(self):
        return self.http_port

    @property
    def url(self):
        return f"http://{self.host}:{self.http_port}"

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- config and process -------------------------------------------------

    def _write_config(self):
        d = self.dir
        self.config_path.write_text(f"""\
# written by tests/servers/influxdb1.py
reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{d / 'meta'}"

[data]
  dir = "{d / 'data'}"
  wal-dir = "{d / 'wal'}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.http_port}"
  auth-enabled = true
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
""")

    def _env(self):
        # influxd 1.x overrides config settings from INFLUXDB_* variables:
        # drop them so that the config file alone decides.
        return {k: v for k, v in os.environ.items()
                if not k.startswith("INFLUXDB_")}

    def start(self, timeout=START_TIMEOUT):
        """Start influxd and wait until it answers /ping with 204.  The first
        start picks free ports (retrying on a clash), creates the admin user
        and the database; later starts reuse ports and data (a restart)."""
        if self.is_running():
            return self
        t0 = time.monotonic()
        restart = self.http_port is not None
        attempts = 1 if restart else START_ATTEMPTS
        last = None
        for _ in range(attempts):
            if restart:
                for p in (self.http_port, self.rpc_port):
                    if not wait_port_free(p, timeout=self.restart_port_wait):
                        raise ServerError(
                            f"{self.name}: cannot restart, port {p} is taken by "
                            f"another process\n{self.log_tail()}")
            else:
                self.http_port, self.rpc_port = free_ports(2)
            self._write_config()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.proc = spawn([self.binary, "run", "-config", str(self.config_path)],
                              self.log_path, cwd=str(self.dir), env=self._env())
            ok, last = self._wait_ready(time.monotonic() + timeout, offset)
            if ok:
                break
            stop_process(self.proc, timeout=2.0, sig=signal.SIGKILL)
            new_log = read_text(self.log_path)[offset:]
            if restart or "address already in use" not in new_log:
                raise ServerError(f"{self.name} did not start ({last})\n"
                                  f"{self.log_tail()}")
        else:
            raise ServerError(f"{self.name}: port clash on {attempts} attempts "
                              f"({last})\n{self.log_tail()}")
        if not self._bootstrapped:
            self._bootstrap()
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline, log_offset):
        """Wait until its log shows it listens on our port (so a clash is
        seen at once, and a 204 from some other server does not count),
        then poll /ping until 204."""
        marker = f"addr={self.host}:{self.http_port}"
        last = "no answer yet"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                return False, f"influxd exited with status {rc}"
            if marker not in read_text(self.log_path)[log_offset:]:
                last = f"log does not show '{marker}' yet"
            else:
                try:
                    status, _, _ = self._request("GET", "/ping", timeout=2.0)
                    last = f"/ping answered {status}"
                    if status == 204:
                        return True, last
                except OSError as e:
                    last = f"/ping: {e}"
            if time.monotonic() >= deadline:
                return False, f"not ready before the deadline, last: {last}"
            time.sleep(0.02)

    def _bootstrap(self):
        # With auth on and no user yet, the one thing allowed without
        # credentials is creating an admin user.
        q = (f"CREATE USER {quote_ident(self.admin_user)} WITH PASSWORD "
             f"{quote_string(self.admin_password)} WITH ALL PRIVILEGES")
        status, body = self.query(q)
        if status != 200 or result_errors(body):
            raise ServerError(f"{self.name}: creating the admin user failed: "
                              f"{status} {body}\n{self.log_tail()}")
        if self.database:
            self.admin_query(f"CREATE DATABASE {quote_ident(self.database)}")
        self._bootstrapped = True

    def stop(self, timeout=10.0):
        """Graceful stop (SIGTERM, then SIGKILL after timeout).  Data, users
        and ports are kept for a later start()."""
        rc = stop_process(self.proc, timeout=timeout)
        return rc

    # -- HTTP ---------------------------------------------------------------

    def _request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        conn = http.client.HTTPConnection(self.host, self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    @staticmethod
    def _decode(data):
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None, user=None,
                password=None, timeout=HTTP_TIMEOUT):
        """Any HTTP request; basic auth when user is given.
        Returns (status, headers, decoded body: JSON, text or None)."""
        headers = dict(headers or {})
        if user is not None:
            headers["Authorization"] = _basic_auth(user, password or "")
        if isinstance(body, str):
            body = body.encode("utf-8")
        status, hdrs, data = self._request(method, path, body, headers, timeout)
        return status, hdrs, self._decode(data)

    def ping(self):
        return self._request("GET", "/ping", timeout=2.0)[0]

    def query(self, q, user=None, password=None, db=None, params=None):
        """POST /query with form-encoded q (and db).  Basic auth when user
        is given.  Returns (status, JSON body).  Note: InfluxQL errors come
        back as 200 with results[i].error; see result_errors()."""
        form = {"q": q}
        if db:
            form["db"] = db
        if params:
            form.update(params)
        status, _, body = self.request(
            "POST", "/query", urllib.parse.urlencode(form),
            {"Content-Type": "application/x-www-form-urlencoded"},
            user=user, password=password)
        return status, body

    def admin_query(self, q, db=None):
        """query() as admin; raises ServerError unless 200 without errors.
        Returns the JSON body."""
        status, body = self.query(q, self.admin_user, self.admin_password, db)
        if status != 200 or result_errors(body):
            raise ServerError(f"admin query {q!r} failed: {status} {body}")
        return body

    def write(self, db, line_protocol, user=None, password=None, precision=None):
        """POST /write?db=... with basic auth.  Returns the status (204 on
        success, 401 bad credentials, 403 no write privilege...)."""
        return self.write_full(db, line_protocol, user, password, precision)[0]

    def write_full(self, db, line_protocol, user=None, password=None, precision=None):
        """Like write() but returns (status, decoded body)."""
        qs = {"db": db}
        if precision:
            qs["precision"] = precision
        status, _, body = self.request(
            "POST", "/write?" + urllib.parse.urlencode(qs), line_protocol,
            {"Content-Type": "text/plain; charset=utf-8"},
            user=user, password=password)
        return status, body

    # -- conveniences for tests ---------------------------------------------

    def users(self):
        """{user name: is admin} from SHOW USERS."""
        body = self.admin_query("SHOW USERS")
        out = {}
        for series in body["results"][0].get("series", []) or []:
            cols = series["columns"]
            for row in series.get("values", []) or []:
                rec = dict(zip(cols, row))
                out[rec["user"]] = bool(rec.get("admin"))
        return out

    def grants(self, user):
        """{database: privilege} from SHOW GRANTS FOR user."""
        body = self.admin_query(f"SHOW GRANTS FOR {quote_ident(user)}")
        out = {}
        for series in body["results"][0].get("series", []) or []:
            cols = series["columns"]
            for row in series.get("values", []) or []:
                rec = dict(zip(cols, row))
                out[rec["database"]] = rec["privilege"]
        return out

    def create_user(self, user, password, grant_all_on=None, admin=False):
        q = f"CREATE USER {quote_ident(user)} WITH PASSWORD {quote_string(password)}"
        if admin:
            q += " WITH ALL PRIVILEGES"
        self.admin_query(q)
        if grant_all_on:
            self.admin_query(f"GRANT ALL ON {quote_ident(grant_all_on)} TO {quote_ident(user)}")

    def drop_user(self, user):
        self.admin_query(f"DROP USER {quote_ident(user)}")

    def __repr__(self):
        state = "running" if self.is_running() else "stopped"
        return f"<Influxd1 {self.url if self.http_port else '-'} {state} dir={self.dir}>"
