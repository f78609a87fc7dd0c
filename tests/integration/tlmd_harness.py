"""Helpers for the tlmd integration tests: process control (Tlmd), a
line-oriented TCP client (TcpClient), HTTP helpers and contract checks.

Fixtures that use these live in conftest.py.  Test modules import helpers
from here (``from tlmd_harness import ...``) rather than from conftest, so
that a conftest.py elsewhere in the repository can never shadow them.
"""


import http.client
import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

#: The ready line; `storage=` (last, may hold spaces) is the storage spec,
#: prefixed `new:` when tlmd has just created an empty database.
READY_RE = re.compile(r"^tlmd ready http=(\d+) tcp=(\d+)(?: storage=(.+))?$")
STARTUP_TIMEOUT = 15.0
IO_TIMEOUT = 15.0

ERROR_CODES = {
    "invalid_request", "unauthorized", "not_found", "invalid_token",
    "not_renewable", "unknown_backend", "backend_unavailable",
    "backend_error", "storage_error", "too_large", "overloaded", "internal",
}

# HTTP status for each result / error code.
HTTP_STATUS = {
    "success": 200,
    "invalid_request": 400,
    "not_renewable": 400,
    "unknown_backend": 400,
    "unauthorized": 401,
    "not_found": 404,
    "invalid_token": 404,
    "too_large": 413,
    "overloaded": 503,
    "backend_unavailable": 503,
    "storage_error": 503,
    "backend_error": 502,
    "internal": 500,
    "accepted": 202,
}

MIN_TTL_DEFAULT = 1000
MAX_TTL_DEFAULT = 96 * 3600 * 1000
META_LIMIT = 64 * 1024
MESSAGE_LIMIT = 1024 * 1024

LEASE_FIELDS = {"id", "backend", "backend_id", "value", "ttl", "issued",
                "expires", "renewable", "tags", "meta", "description"}
ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,}$")
#: A local token is `<lease id>.<at least 256 random bits>`.
LOCAL_VALUE_RE = re.compile(r"^([A-Za-z0-9_-]{16,23})\.[A-Za-z0-9_-]{43,}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def parse_ts(s):
    """RFC 3339 UTC with milliseconds -> epoch milliseconds (int)."""
    assert isinstance(s, str) and TS_RE.match(s), f"bad timestamp: {s!r}"
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sleep_until_ms(epoch_ms):
    """Sleep (in small steps) until the wall clock reaches epoch_ms."""
    while True:
        remaining = epoch_ms - now_ms()
        if remaining <= 0:
            return
        time.sleep(min(remaining / 1000.0, 0.05))


def assert_success(resp):
    assert isinstance(resp, dict), resp
    assert resp.get("result") == "success", f"expected success, got {short(resp)}"
    return resp


def assert_failure(resp, code):
    assert isinstance(resp, dict), resp
    assert resp.get("result") == "failure", f"expected failure {code}, got {short(resp)}"
    assert resp.get("error") == code, f"expected error {code}, got {short(resp)}"
    assert code in ERROR_CODES, code
    assert isinstance(resp.get("message"), str) and resp["message"].strip(), \
        f"failure without a human message: {short(resp)}"
    return resp


def assert_revocation_pending(resp):
    """The outcome of a revoke the backend has not confirmed: not a success,
    not a failure; the lease is dead and its revocation retried."""
    assert isinstance(resp, dict), resp
    assert resp.get("result") == "accepted", f"expected accepted, got {short(resp)}"
    assert resp.get("outcome") == "revocation_pending", short(resp)
    assert "error" not in resp, short(resp)
    assert "is dead" in resp.get("message", ""), short(resp)
    return resp


def short(obj, n=600):
    s = json.dumps(obj) if not isinstance(obj, str) else obj
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def check_lease(lease, with_value=True):
    """Validate the shape of a lease object; returns it."""
    assert isinstance(lease, dict), lease
    expected = set(LEASE_FIELDS)
    if not with_value:
        expected.discard("value")
        assert "value" not in lease, f"lease must not carry 'value' here: {lease}"
    missing = expected - set(lease)
    assert not missing, f"lease lacks fields {missing}: {lease}"
    assert isinstance(lease["id"], str) and ID_RE.match(lease["id"]), lease["id"]
    assert isinstance(lease["backend"], str) and lease["backend"]
    assert lease["backend_id"] is not None
    if with_value:
        assert isinstance(lease["value"], str)
        if lease["backend"] == "local":
            m = LOCAL_VALUE_RE.match(lease["value"])
            assert m and m.group(1) == lease["id"], "not a local token of this lease"
    assert isinstance(lease["ttl"], int) and not isinstance(lease["ttl"], bool)
    assert lease["ttl"] > 0
    parse_ts(lease["issued"])
    parse_ts(lease["expires"])
    assert parse_ts(lease["expires"]) > parse_ts(lease["issued"])
    assert isinstance(lease["renewable"], bool)
    assert isinstance(lease["tags"], list) and all(isinstance(t, str) for t in lease["tags"])
    assert isinstance(lease["meta"], dict)
    assert isinstance(lease["description"], str)
    return lease


def without_value(lease):
    return {k: v for k, v in lease.items() if k != "value"}


def write_key_file(path, keys):
    Path(path).write_text("".join(k + "\n" for k in keys))
    return str(path)


# ---------------------------------------------------------------------------
# TCP client
# ---------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class TcpClient:
    """Line-delimited JSON client for tlmd's TCP port."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    # -- sending
    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def send_many(self, objs):
        self.send_raw(b"".join(json.dumps(o).encode() + b"\n" for o in objs))

    # -- receiving
    def recv_line(self, timeout=None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            if self.eof:
                raise ConnectionClosed(f"connection closed; partial data {self.buf[:200]!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete reply line from tlmd within deadline")
            self.sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self, timeout=None):
        line = self.recv_line(timeout)
        try:
            obj = json.loads(line.decode("utf-8"))
        except ValueError as e:
            raise AssertionError(f"tlmd sent a non-JSON line: {line[:300]!r}") from e
        assert isinstance(obj, dict), f"reply is not an object: {obj!r}"
        return obj

    def recv_many(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        return [self.recv(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def request(self, obj, timeout=None):
        self.send(obj)
        return self.recv(timeout)

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection (EOF/reset) within timeout.

        Any data still arriving is discarded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------

class HttpResponse:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, RecursionError):
            self.json = None

    def __repr__(self):
        return f"HttpResponse({self.status}, {self.raw[:300]!r})"


def http_request(port, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return HttpResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, raw)
    finally:
        conn.close()


def http_raw(port, data: bytes, timeout=IO_TIMEOUT):
    """Send raw bytes to the HTTP port (from a background thread, ignoring
    send errors: the server may answer and close early) and read the reply
    until EOF/reset.  Returns (status or None, raw reply bytes, HttpResponse|None).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def sender():
        try:
            sock.sendall(data)
        except OSError:
            pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, min(1.0, deadline - time.monotonic())))
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                if _http_complete(out):
                    break
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            out += chunk
            if _http_complete(out):
                break
    finally:
        sock.close()
        t.join(5)
    status = None
    resp = None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
    if m:
        status = int(m.group(1))
        head, _, body = out.partition(b"\r\n\r\n")
        resp = HttpResponse(status, {}, body)
    return status, out, resp


def _http_complete(out):
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(m) and len(body) >= int(m.group(1))


# ---------------------------------------------------------------------------
# the daemon
# ---------------------------------------------------------------------------

class TlmdStartError(AssertionError):
    pass


class Tlmd:
    """One tlmd process."""

    def __init__(self, binary, workdir, name="tlmd", storage="memory",
                 args=None, api_key_file=None, bind="127.0.0.1", config=None,
                 use_defaults=True):
        self.binary = str(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.storage = storage
        self.extra_args = list(args or [])
        self.api_key_file = api_key_file
        self.bind = bind
        self.config = config
        self.use_defaults = use_defaults
        self.proc = None
        self.http_port = None
        self.tcp_port = None
        self.stdout_lines = []
        self.log_path = None
        self._log_file = None
        self._starts = 0
        self._exit_expected = False
        self._lines = queue.Queue()
        self._reader = None

    # -- process control
    def argv(self):
        argv = [self.binary]
        if self.use_defaults:
            argv += ["--bind", self.bind, "--http-port", "0", "--tcp-port", "0"]
            if self.storage is not None:
                argv += ["--storage", self.storage]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        if self.api_key_file is not None:
            argv += ["--api-key-file", str(self.api_key_file)]
        return argv + self.extra_args

    def _spawn(self):
        self._starts += 1
        self._exit_expected = False
        self.log_path = self.workdir / f"{self.name}.stderr.{self._starts}.log"
        self._log_file = open(self.log_path, "wb")
        self.stdout_lines = []
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._log_file, cwd=str(self.workdir))
        lines, sink, stdout = self._lines, self.stdout_lines, self.proc.stdout

        def reader():
            # drains stdout for the whole life of the process
            for raw in iter(stdout.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                sink.append(text)
                lines.put(text)
            lines.put(None)

        self._reader = threading.Thread(target=reader, daemon=True)
        self._reader.start()

    def start(self, timeout=STARTUP_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._spawn()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TlmdStartError(
                    f"tlmd did not print its ready line within {timeout}s; "
                    f"stdout={self.stdout_lines!r}\nstderr:\n{self.read_log()}")
            try:
                line = self._lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self._exit_expected = True  # reported right here
                rc = self.proc.wait(5)
                raise TlmdStartError(
                    f"tlmd exited (code {rc}) before becoming ready; "
                    f"stdout={self.stdout_lines!r}\nstderr:\n{self.read_log()}")
            m = READY_RE.match(line)
            if m:
                self.http_port, self.tcp_port = int(m.group(1)), int(m.group(2))
                assert self.http_port > 0 and self.tcp_port > 0
                return self
            # anything else on stdout before the ready line is a contract breach
            self.kill()
            raise TlmdStartError(f"unexpected stdout line before ready: {line!r}")

    def start_expect_failure(self, timeout=STARTUP_TIMEOUT):
        """Start and expect tlmd to exit non-zero without becoming ready.
        Returns (exit code, stderr text)."""
        self._spawn()
        self._exit_expected = True
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._reader.join(5)
                assert not any(READY_RE.match(x) for x in self.stdout_lines), \
                    f"tlmd printed ready but then exited: {self.stdout_lines}"
                return rc, self.read_log()
            if any(READY_RE.match(x) for x in self.stdout_lines):
                self.kill()
                raise AssertionError(
                    f"tlmd started although it should have refused: "
                    f"{self.stdout_lines}\n{self.read_log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"tlmd neither exited nor became ready in {timeout}s")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig and wait for exit; returns the exit code."""
        assert self.proc is not None
        self._exit_expected = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"tlmd did not exit within {timeout}s after {sig!r}")
        self._finish()
        return rc

    def send_signal(self, sig):
        """Send a signal without waiting (the exit is then expected)."""
        self._exit_expected = True
        self.proc.send_signal(sig)

    def exited_unexpectedly(self):
        return (self.proc is not None and not self._exit_expected
                and self.proc.poll() is not None)

    def status(self):
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if rc < 0:
            try:
                return f"killed by {signal.Signals(-rc).name}"
            except ValueError:
                return f"killed by signal {-rc}"
        return f"exit code {rc}"

    def kill(self):
        self._exit_expected = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._finish()

    def restart(self, timeout=STARTUP_TIMEOUT):
        if self.alive():
            self.stop()
        return self.start(timeout)

    def _finish(self):
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            try:
                self.proc.stdout.close()
            except OSError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def read_log(self):
        out = []
        for p in sorted(self.workdir.glob(f"{self.name}.stderr.*.log")):
            try:
                text = p.read_text(errors="replace")
            except OSError:
                continue
            if len(text) > 20000:
                text = "...\n" + text[-20000:]
            out.append(f"--- {p.name} ---\n{text}")
        return "\n".join(out)

    # -- clients
    def tcp(self, api_key=None):
        c = TcpClient(self.tcp_port)
        if api_key is not None:
            assert_success(c.request({"action": "auth", "api_key": api_key}))
        return c

    def http(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
        return http_request(self.http_port, method, path, body, headers, timeout)

    def action(self, transport, obj, api_key=None):
        """One request on a fresh TCP connection or HTTP POST /v1/actions."""
        return self.api(transport, api_key).call(obj)

    def api(self, transport, api_key=None):
        return Api(self, transport, api_key)


class Api:
    """Uniform request/response access over TCP (one persistent connection)
    or HTTP (POST /v1/actions).  Over HTTP it also checks that the status
    code mirrors the result."""

    def __init__(self, tlmd, transport, api_key=None):
        assert transport in ("tcp", "http")
        self.tlmd = tlmd
        self.transport = transport
        self.api_key = api_key
        self._tcp = None

    @property
    def conn(self):
        if self._tcp is None:
            self._tcp = self.tlmd.tcp(api_key=self.api_key)
        return self._tcp

    def headers(self):
        h = {"Content-Type": "application/json"}
        if self.api_key is not None:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def call(self, obj):
        return self.raw(json.dumps(obj).encode())

    def raw(self, data: bytes):
        """Send one raw message (no trailing newline needed)."""
        if self.transport == "tcp":
            self.conn.send_raw(data + b"\n")
            return self.conn.recv()
        r = http_request(self.tlmd.http_port, "POST", "/v1/actions", data, self.headers())
        assert isinstance(r.json, dict), f"HTTP body is not a JSON object: {r!r}"
        key = r.json.get("error") if r.json.get("result") == "failure" else r.json.get("result")
        assert r.status == HTTP_STATUS.get(key), \
            f"HTTP status {r.status} does not mirror {key}: {r!r}"
        return r.json

    # convenience wrappers --------------------------------------------------
    def ok(self, obj):
        return assert_success(self.call(obj))

    def fail(self, obj, code):
        return assert_failure(self.call(obj), code)

    def create(self, ttl=None, **kw):
        req = {"action": "create", **kw}
        if ttl is not None:
            req.setdefault("options", {})["ttl"] = ttl
        return check_lease(self.ok(req)["lease"])

    def get(self, lease_id):
        return self.call({"action": "get", "token_id": lease_id})

    def health(self):
        return self.ok({"action": "health"})

    def list_all(self, page_limit=None, **filters):
        """Page through list; returns all leases, asserting sane paging."""
        leases, cursor, pages = [], None, 0
        while True:
            req = {"action": "list", **filters}
            if page_limit is not None:
                req["limit"] = page_limit
            if cursor is not None:
                req["cursor"] = cursor
            r = self.ok(req)
            assert isinstance(r.get("leases"), list), r
            assert "next_cursor" in r, r
            if page_limit is not None:
                assert len(r["leases"]) <= page_limit
            leases += r["leases"]
            pages += 1
            assert pages < 10000, "paging does not terminate"
            cursor = r["next_cursor"]
            if cursor is None:
                return leases
            assert isinstance(cursor, str) and cursor, r

    def close(self):
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
