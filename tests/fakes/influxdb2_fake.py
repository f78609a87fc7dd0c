#!/usr/bin/env python3
"""A fake of the InfluxDB 2.x (OSS) authorizations API, for tests.

Follows /work/shared/reference/influxdb-notes.md and the published contract
excerpt influxdb-v2-authorizations.yml: same paths, statuses and error shapes
(``{"code": ..., "message": ...}``), admin token enforced, bodies validated.
Python 3 standard library only.

Command line (binds 127.0.0.1 only; prints one line, then serves until
SIGTERM/SIGINT)::

    python3 influxdb2_fake.py --port 0 --admin-token-file FILE --org NAME \
        [--ready-file PATH] [--verbose]
    -> influxdb2-fake ready port=<port> org_id=<16 hex>

In process::

    fake = FakeInfluxDB2("admin-token", "my-org")
    port = fake.start()             # binds 127.0.0.1:<ephemeral>
    fake.set_fault("error503", count=2)
    fake.stop(); fake.start()       # down, then up again on the same port

Test-only control endpoints (no auth, never affected by faults):
``GET /_fake/state``, ``GET|POST /_fake/faults``, ``POST /_fake/reset``.
See README.md next to this file.
"""

import argparse
import base64
import collections
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeInfluxDB2", "OSS_RESOURCE_TYPES", "FAULT_MODES", "main"]

VERSION = "v2.7.11"

#: The 23 resource types InfluxDB OSS accepts (the contract's 26 minus the
#: cloud-only flows, functions and subscriptions).
OSS_RESOURCE_TYPES = (
    "authorizations", "buckets", "dashboards", "orgs", "tasks", "telegrafs",
    "users", "variables", "secrets", "labels", "views", "documents",
    "notificationRules", "notificationEndpoints", "checks", "dbrp",
    "annotations", "sources", "scrapers", "notebooks", "remotes",
    "replications", "instance",
)

FAULT_MODES = ("none", "refuse", "hang", "error500", "error503", "error429",
               "slow", "down")

_FAULT_ERRORS = {
    "error500": (500, "internal error", "fake: injected internal error"),
    "error503": (503, "unavailable", "fake: injected unavailable"),
    "error429": (429, "too many requests", "fake: injected rate limit"),
}

MAX_BODY = 1 << 20          # bigger request bodies get 413
MAX_LOG = 1000              # request log entries kept for /_fake/state
JSON_TYPE = "application/json; charset=utf-8"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class ApiError(Exception):
    """An InfluxDB-style error answer."""

    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)


def _unauthorized():
    return ApiError(401, "unauthorized", "unauthorized access")


def _forbidden(what):
    return ApiError(403, "forbidden", f"{what} is forbidden for this token")


def _invalid_json(detail):
    return ApiError(400, "invalid", f"invalid json structure: {detail}")


def _now():
    return (datetime.now(timezone.utc).isoformat(timespec="microseconds")
            .replace("+00:00", "Z"))


def _json_bytes(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")


def _json_response(status, obj, headers=()):
    return (status, [("Content-Type", JSON_TYPE)] + list(headers),
            _json_bytes(obj))


def _error_response(err):
    return _json_response(err.status,
                          {"code": err.code, "message": err.message},
                          err.headers)


_HEX16 = re.compile(r"[0-9a-fA-F]{16}\Z")


def _parse_id(text):
    """Decodes an InfluxDB ID like platform.ID does: 16 hex chars, not 0."""
    if not isinstance(text, str) or len(text) != 16:
        raise ApiError(400, "invalid", "id must have a length of 16 bytes")
    if not _HEX16.match(text) or int(text, 16) == 0:
        raise ApiError(400, "invalid", "invalid ID")
    return text.lower()


def _body_id(value, field):
    """An ID inside a request body: a malformed one fails JSON decoding."""
    if not isinstance(value, str):
        raise _invalid_json(f"{field} must be a string")
    try:
        return _parse_id(value)
    except ApiError as e:
        raise _invalid_json(f"{field}: {e.message}") from None


def _new_token():
    # Like InfluxDB: URL-safe base64 of 64 random bytes, 88 chars, ends "==".
    return base64.urlsafe_b64encode(secrets.token_bytes(64)).decode("ascii")


def _int_or_none(value, name, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) \
            or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}")
    return value


def normalize_fault(spec):
    """Validates a fault description; returns the normalized dict.

    Raises ValueError on a bad one."""
    if not isinstance(spec, dict):
        raise ValueError("the fault must be a JSON object")
    known = {"mode", "delay_ms", "count", "method", "path", "process_first",
             "retry_after"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    mode = spec.get("mode", "none")
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
    delay_ms = _int_or_none(spec.get("delay_ms"), "delay_ms", 0) or 0
    count = _int_or_none(spec.get("count"), "count", 1)
    retry_after = _int_or_none(spec.get("retry_after"), "retry_after", 0)
    method = spec.get("method")
    if method is not None and (not isinstance(method, str) or not method):
        raise ValueError("method must be a non-empty string")
    path = spec.get("path")
    if path is not None and (not isinstance(path, str)
                             or not path.startswith("/")):
        raise ValueError("path must be a string starting with '/'")
    process_first = spec.get("process_first", False)
    if not isinstance(process_first, bool):
        raise ValueError("process_first must be true or false")
    if mode == "down" and delay_ms <= 0:
        raise ValueError("mode down needs delay_ms > 0 (how long to be down)")
    if mode == "none":
        return {"mode": "none", "delay_ms": 0, "count": None, "method": None,
                "path": None, "process_first": False, "retry_after": None}
    return {"mode": mode, "delay_ms": delay_ms, "count": count,
            "method": method.upper() if method else None, "path": path,
            "process_first": process_first, "retry_after": retry_after}


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------

class _ClientGone(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, fake):
        self.fake = fake
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.conns = set()
        self.threads = set()
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a possibly slow
        # reverse lookup; not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        if self.fake.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "influxdb2-fake"
    sys_version = ""
    timeout = 180  # idle keep-alive connections closed after 3 min, as influxd

    # -- connection bookkeeping (so that stop() can close everything) -----

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                       1)
        except OSError:
            pass
        srv = self.server
        with srv.conn_lock:
            srv.conns.add(self.connection)
            srv.threads.add(threading.current_thread())
            stopping = srv.stopping.is_set()
        if stopping:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            srv = self.server
            with srv.conn_lock:
                srv.conns.discard(self.connection)
                srv.threads.discard(threading.current_thread())

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.server.fake.verbose:
            sys.stderr.write("influxdb2-fake: %s %s\n"
                             % (self.address_string(), fmt % args))

    # -- errors produced by BaseHTTPRequestHandler itself ------------------

    def send_error(self, code, message=None, explain=None):
        codes = {400: "invalid", 404: "not found", 405: "method not allowed",
                 408: "invalid", 413: "request too large",
                 414: "request too large", 431: "request too large",
                 501: "not implemented", 505: "invalid"}
        self.close_connection = True
        body = _json_bytes({"code": codes.get(code, "internal error"),
                            "message": message or "bad request"})
        try:
            self.send_response(code)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass

    # -- all methods go through _dispatch ---------------------------------

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _ClientGone()
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ApiError(400, "invalid", "bad chunked encoding")
                if size == 0:
                    while True:   # trailers
                        line = self.rfile.readline(8192)
                        if not line:
                            raise _ClientGone()
                        if line in (b"\r\n", b"\n"):
                            break
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "request too large",
                                   "request body too large")
                data = self.rfile.read(size)
                if len(data) < size:
                    raise _ClientGone()
                chunks.append(data)
                self.rfile.readline(16)   # CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "invalid", "invalid Content-Length")
        if n > MAX_BODY:
            raise ApiError(413, "request too large", "request body too large")
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise _ClientGone()
        return data

    def _dispatch(self):
        fake = self.server.fake
        try:
            body = self._read_body()
        except _ClientGone:
            self.close_connection = True
            return
        except ApiError as e:
            self.close_connection = True    # the body may be unread
            self._send(_error_response(e))
            return
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == "/_fake" or path.startswith("/_fake/"):
            resp, after = fake._control(self.command, path, body)
            self._send(resp)
            if after is not None:
                after()
            return
        req = _Request(self.command, path, query, self.headers, body)
        fault = fake._take_fault(self.command, path)
        if fault is None:
            resp = fake._handle_api(req)
            fake._log(req, resp[0], None)
            self._send(resp)
            return
        self._faulted(fake, req, fault)

    def _faulted(self, fake, req, fault):
        mode = fault["mode"]
        resp = fake._handle_api(req) if fault["process_first"] else None
        if mode == "hang":
            fake._log(req, "hang", mode)
            fake._hang(self.server, fault["gen"])
            self._drop(reset=False)
            return
        delay = fault["delay_ms"] / 1000.0
        if delay > 0 and self.server.stopping.wait(delay):
            self._drop(reset=False)
            return
        if mode == "refuse":
            fake._log(req, "refuse", mode)
            self._drop(reset=True)
            return
        if mode in _FAULT_ERRORS:
            status, code, message = _FAULT_ERRORS[mode]
            headers = []
            if fault.get("retry_after") is not None:
                headers.append(("Retry-After", str(fault["retry_after"])))
            resp = _error_response(ApiError(status, code, message, headers))
            fake._log(req, status, mode)
            self._send(resp)
            return
        # slow (or a mode without an own effect): the normal answer, late.
        if resp is None:
            resp = fake._handle_api(req)
        fake._log(req, resp[0], mode)
        self._send(resp)

    def _drop(self, reset):
        """Ends the connection without an answer (RST if reset)."""
        self.close_connection = True
        sock = self.connection
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()
            sock.close()   # the last reference: a real close (RST if reset)
        except OSError:
            pass

    def _send(self, resp):
        status, headers, body = resp
        body = body or b""
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            # Head and body in one write: two small writes would wait for
            # a delayed ACK (Nagle), 40 ms per answer.
            self._headers_buffer.append(b"\r\n")
            if self.command != "HEAD" and body:
                self._headers_buffer.append(body)
            self.flush_headers()
        except OSError:
            self.close_connection = True


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def param(self, name):
        """The first value of a query parameter; empty counts as absent."""
        values = self.query.get(name)
        if not values or values[0] == "":
            return None
        return values[0]

    def json_body(self):
        if not self.body.strip():
            raise _invalid_json("empty request body")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _invalid_json(str(e)) from None

    @property
    def full_path(self):
        q = "&".join(f"{k}={v}" for k, vs in self.query.items() for v in vs)
        return self.path + ("?" + q if q else "")


# ---------------------------------------------------------------------------
# the fake
# ---------------------------------------------------------------------------

_AUTH_ID_PATH = re.compile(r"/api/v2/authorizations/([^/]+)\Z")


class FakeInfluxDB2:
    """An in-memory InfluxDB 2.x authorizations API on 127.0.0.1.

    Attributes: ``port``, ``url``, ``admin_token``, ``org_name``,
    ``org_id``, ``user_id``, ``user_name``."""

    def __init__(self, admin_token, org_name, port=0, user_name="admin",
                 verbose=False):
        if not isinstance(admin_token, str) or not admin_token.strip():
            raise ValueError("admin_token must be a non-empty string")
        if not isinstance(org_name, str) or not org_name:
            raise ValueError("org_name must be a non-empty string")
        self.admin_token = admin_token.strip()
        self.org_name = org_name
        self.user_name = user_name
        self.port = port
        self.verbose = verbose
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._life = threading.RLock()
        self._ids = set()
        self._orgs = {}            # id -> org dict, in creation order
        self._users = {}           # id -> user dict
        self._auths = {}           # id -> internal record, creation order
        self._by_token = {}        # token -> record
        self._deleted = []         # ids deleted through the API
        self._requests = collections.deque(maxlen=MAX_LOG)
        self._fault = normalize_fault({"mode": "none"})
        self._fault_gen = 0        # bumped by explicit fault changes only
        self._server = None
        self._thread = None
        self._down_cancel = None
        self.user_id = self._new_id()
        self._users[self.user_id] = {"id": self.user_id, "name": user_name,
                                     "status": "active"}
        self.org_id = self.create_org(org_name)

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self):
        return self._server is not None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, port=None):
        """Starts serving; returns the port. After the first start, the
        same port is used again unless another one is given."""
        with self._life:
            self._cancel_down()
            if self._server is not None:
                raise RuntimeError("the fake is already running")
            return self._start_locked(port)

    def _start_locked(self, port=None):
        if port is None:
            port = self.port or 0
        server = _Server(("127.0.0.1", port), self)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": 0.05},
                                  name=f"influxdb2-fake:{self.port}",
                                  daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        return self.port

    def stop(self):
        """Stops serving: closes the listener and every open connection
        (hung and slow requests end without an answer). The state is kept;
        start() again to come back on the same port."""
        with self._life:
            self._cancel_down()
            self._stop_locked()

    def _stop_locked(self):
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        with self._cv:
            self._cv.notify_all()
        server.shutdown()
        server.server_close()
        thread.join(5)
        with server.conn_lock:
            conns = list(server.conns)
            threads = list(server.threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join(max(0.0, deadline - time.monotonic()))

    def _cancel_down(self):
        if self._down_cancel is not None:
            self._down_cancel.set()
            self._down_cancel = None

    def _go_down(self, seconds):
        with self._life:
            if self._server is None:     # stopped already: nothing to do
                with self._lock:
                    if self._fault["mode"] == "down":
                        self._fault = normalize_fault({"mode": "none"})
                return
            self._stop_locked()
            cancel = self._down_cancel = threading.Event()
        if cancel.wait(seconds):
            return
        with self._life:
            if self._down_cancel is cancel and self._server is None:
                self._down_cancel = None
                with self._lock:
                    if self._fault["mode"] == "down":
                        self._fault = normalize_fault({"mode": "none"})
                try:
                    self._start_locked(self.port)
                except OSError as e:
                    sys.stderr.write(f"influxdb2-fake: cannot come back on "
                                     f"port {self.port}: {e}\n")

    def __enter__(self):
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- faults ------------------------------------------------------------

    def set_fault(self, mode, delay_ms=0, count=None, method=None, path=None,
                  process_first=False, retry_after=None):
        """Injects a fault into the API endpoints (see README.md).

        ``mode``: none | refuse | hang | error500 | error503 | error429 |
        slow | down. ``count``: requests to affect, then back to none.
        ``method``/``path``: only requests with this method / path prefix.
        ``process_first``: carry out the request before the fault (the
        change happens, the answer is lost / late / an error).
        Every call releases requests held by an earlier hang."""
        return self._set_fault({
            "mode": mode, "delay_ms": delay_ms, "count": count,
            "method": method, "path": path, "process_first": process_first,
            "retry_after": retry_after})

    def clear_fault(self):
        return self.set_fault("none")

    clear_faults = clear_fault

    @property
    def fault(self):
        with self._lock:
            return dict(self._fault)

    def _set_fault(self, spec):
        fault = normalize_fault(spec)    # raises ValueError
        with self._cv:
            self._fault = fault
            self._fault_gen += 1
            self._cv.notify_all()
        if fault["mode"] == "down":
            threading.Thread(target=self._go_down,
                             args=(fault["delay_ms"] / 1000.0,),
                             name="influxdb2-fake-down", daemon=True).start()
        return dict(fault)

    def _take_fault(self, method, path):
        """The fault for this request (and one off its count), or None."""
        with self._lock:
            f = self._fault
            if f["mode"] in ("none", "down"):
                return None
            if f["method"] and f["method"] != method:
                return None
            if f["path"] and not path.startswith(f["path"]):
                return None
            taken = dict(f, gen=self._fault_gen)
            if f["count"] is not None:
                f["count"] -= 1
                if f["count"] <= 0:
                    # back to none; does not release hung requests
                    self._fault = normalize_fault({"mode": "none"})
            return taken

    def _hang(self, server, gen):
        with self._cv:
            while not server.stopping.is_set() and self._fault_gen == gen:
                self._cv.wait(0.25)

    # -- state for assertions ----------------------------------------------

    def authorizations(self):
        """All authorizations (full records, API shape), creation order."""
        with self._lock:
            return [self._auth_json(r) for r in self._auths.values()]

    def state(self):
        with self._lock:
            return {
                "port": self.port,
                "running": self._server is not None,
                "org": {"id": self.org_id, "name": self.org_name},
                "orgs": [{"id": o["id"], "name": o["name"]}
                         for o in self._orgs.values()],
                "user": {"id": self.user_id, "name": self.user_name},
                "authorizations": [
                    {"id": r["id"], "token": r["token"],
                     "status": r["status"], "description": r["description"],
                     "orgID": r["orgID"], "userID": r["userID"],
                     "permissions": r["permissions"],
                     "createdAt": r["createdAt"],
                     "updatedAt": r["updatedAt"]}
                    for r in self._auths.values()],
                "deleted": list(self._deleted),
                "fault": dict(self._fault),
                "requests": list(self._requests),
            }

    def requests(self):
        """The log of API requests (not control ones), oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self):
        """Forgets all authorizations, the request log and the fault."""
        with self._cv:
            self._auths.clear()
            self._by_token.clear()
            self._deleted.clear()
            self._requests.clear()
            self._fault = normalize_fault({"mode": "none"})
            self._fault_gen += 1
            self._cv.notify_all()

    def create_org(self, name):
        """Adds an organization; returns its id."""
        with self._lock:
            if any(o["name"] == name for o in self._orgs.values()):
                raise ValueError(f"organization with name {name} "
                                 f"already exists")
            org_id = self._new_id()
            now = _now()
            self._orgs[org_id] = {"id": org_id, "name": name,
                                  "description": "", "createdAt": now,
                                  "updatedAt": now}
            return org_id

    def _log(self, req, status, fault):
        with self._lock:
            self._requests.append({"method": req.method,
                                   "path": req.full_path,
                                   "status": status, "fault": fault})

    # -- ids, json shapes --------------------------------------------------

    def _new_id(self):
        with self._lock:
            while True:
                candidate = secrets.token_hex(8)
                if candidate[0] != "0" and candidate not in self._ids:
                    self._ids.add(candidate)
                    return candidate

    def _org_json(self, o):
        oid, name = o["id"], o["name"]
        return {
            "links": {
                "self": f"/api/v2/orgs/{oid}",
                "members": f"/api/v2/orgs/{oid}/members",
                "owners": f"/api/v2/orgs/{oid}/owners",
                "labels": f"/api/v2/orgs/{oid}/labels",
                "secrets": f"/api/v2/orgs/{oid}/secrets",
                "buckets": f"/api/v2/buckets?org={name}",
                "tasks": f"/api/v2/tasks?org={name}",
                "dashboards": f"/api/v2/dashboards?org={name}",
            },
            "id": oid, "name": name, "description": o["description"],
            "createdAt": o["createdAt"], "updatedAt": o["updatedAt"],
        }

    def _perm_json(self, p):
        res = dict(p["resource"])
        org = self._orgs.get(res.get("orgID", ""))
        if org is not None and "org" not in res:
            res["org"] = org["name"]
        return {"action": p["action"], "resource": res}

    def _auth_json(self, r):
        org = self._orgs.get(r["orgID"])
        user = self._users.get(r["userID"])
        return {
            "id": r["id"],
            "token": r["token"],
            "status": r["status"],
            "description": r["description"],
            "orgID": r["orgID"],
            "org": org["name"] if org else "",
            "userID": r["userID"],
            "user": user["name"] if user else "",
            "permissions": [self._perm_json(p) for p in r["permissions"]],
            "links": {"self": f"/api/v2/authorizations/{r['id']}",
                      "user": f"/api/v2/users/{r['userID']}"},
            "createdAt": r["createdAt"],
            "updatedAt": r["updatedAt"],
        }

    # -- routing -------------------------------------------------------------

    def _handle_api(self, req):
        try:
            return self._route(req)
        except ApiError as e:
            return _error_response(e)
        except Exception as e:  # a bug in the fake: answer like InfluxDB
            sys.stderr.write(f"influxdb2-fake: internal error: {e!r}\n")
            return _error_response(ApiError(500, "internal error", str(e)))

    def _route(self, req):
        path, method = req.path, req.method
        if path == "/ping":
            handlers = {"GET": self._ping, "HEAD": self._ping}
            args = ()
        elif path == "/health":
            handlers = {"GET": self._health}
            args = ()
        elif path == "/api/v2/orgs":
            handlers = {"GET": self._get_orgs, "POST": self._post_orgs}
            args = ()
        elif path == "/api/v2/authorizations":
            handlers = {"GET": self._list_auths, "POST": self._post_auth}
            args = ()
        else:
            m = _AUTH_ID_PATH.match(path)
            if not m:
                raise ApiError(404, "not found", "path not found")
            handlers = {"GET": self._get_auth, "PATCH": self._patch_auth,
                        "DELETE": self._delete_auth}
            args = (unquote(m.group(1)),)
        handler = handlers.get(method)
        if handler is None:
            allow = ", ".join(sorted(handlers))
            raise ApiError(405, "method not allowed", f"allow: {allow}",
                           [("Allow", allow)])
        return handler(req, *args)

    def _authenticate(self, req):
        """("admin", None) or ("token", record); raises 401."""
        header = req.headers.get("Authorization")
        if not header:
            raise _unauthorized()
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme not in ("Token", "Bearer") or not token:
            raise _unauthorized()
        if secrets.compare_digest(token.encode("utf-8", "surrogateescape"),
                                  self.admin_token.encode("utf-8")):
            return "admin", None
        with self._lock:
            rec = self._by_token.get(token)
            if rec is not None and rec["status"] == "active":
                return "token", rec
        raise _unauthorized()

    def _require_admin(self, req, what):
        who, _ = self._authenticate(req)
        if who != "admin":
            raise _forbidden(what)

    # -- system endpoints ----------------------------------------------------

    def _ping(self, req):
        return (204, [("X-Influxdb-Build", "OSS"),
                      ("X-Influxdb-Version", VERSION)], b"")

    def _health(self, req):
        return _json_response(200, {
            "name": "influxdb", "message": "ready for queries and writes",
            "status": "pass", "checks": [], "version": VERSION,
            "commit": "influxdb2-fake"})

    # -- orgs --------------------------------------------------------------

    def _get_orgs(self, req):
        self._require_admin(req, "read:orgs")
        name, org_id = req.param("org"), req.param("orgID")
        user_id = req.param("userID")
        if org_id is not None:
            org_id = _parse_id(org_id)
        if user_id is not None:
            user_id = _parse_id(user_id)
        with self._lock:
            orgs = list(self._orgs.values())
            if name is not None:
                orgs = [o for o in orgs if o["name"] == name]
                if not orgs:
                    raise ApiError(404, "not found",
                                   f'organization name "{name}" not found')
            if org_id is not None:
                orgs = [o for o in orgs if o["id"] == org_id]
                if not orgs:
                    raise ApiError(404, "not found",
                                   "organization not found")
            if user_id is not None and user_id not in self._users:
                orgs = []
            body = {"links": {"self": "/api/v2/orgs"},
                    "orgs": [self._org_json(o) for o in orgs]}
        return _json_response(200, body)

    def _post_orgs(self, req):
        self._require_admin(req, "write:orgs")
        data = req.json_body()
        if not isinstance(data, dict):
            raise _invalid_json("expected a JSON object")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise _invalid_json("name must be a string")
        desc = data.get("description")
        if desc is not None and not isinstance(desc, str):
            raise _invalid_json("description must be a string")
        if not name:
            raise ApiError(400, "invalid", "org name is empty")
        try:
            org_id = self.create_org(name)
        except ValueError as e:
            raise ApiError(422, "conflict", str(e)) from None
        with self._lock:
            org = self._orgs[org_id]
            org["description"] = desc or ""
            return _json_response(201, self._org_json(org))

    # -- authorizations ----------------------------------------------------

    def _post_auth(self, req):
        self._require_admin(req, "write:authorizations")
        data = req.json_body()
        if not isinstance(data, dict):
            raise _invalid_json("expected a JSON object")
        # Decoding (types, ID formats): "invalid json structure".
        org_id = data.get("orgID")
        if org_id is not None:
            org_id = _body_id(org_id, "orgID")
        user_id = data.get("userID")
        if user_id is not None:
            user_id = _body_id(user_id, "userID")
        desc = data.get("description")
        if desc is None:
            desc = ""
        elif not isinstance(desc, str):
            raise _invalid_json("description must be a string")
        status = data.get("status")
        if status is None or status == "":
            status = "active"
        elif not isinstance(status, str):
            raise _invalid_json("status must be a string")
        raw_perms = data.get("permissions")
        if raw_perms is None:
            raw_perms = []
        if not isinstance(raw_perms, list):
            raise _invalid_json("permissions must be an array")
        perms = [self._decode_permission(p, i)
                 for i, p in enumerate(raw_perms)]
        # Validate(), in InfluxDB's order.
        if not perms:
            raise ApiError(400, "invalid",
                           "authorization must include permissions")
        for p in perms:
            if p["action"] not in ("read", "write"):
                raise ApiError(400, "invalid", "unknown action for permission")
            if p["resource"]["type"] not in OSS_RESOURCE_TYPES:
                raise ApiError(400, "invalid",
                               "unknown resource type for permission")
        if org_id is None:
            raise ApiError(400, "invalid", "org id required")
        if status not in ("active", "inactive"):
            raise ApiError(400, "invalid", "invalid status")
        with self._lock:
            if org_id not in self._orgs:
                raise ApiError(400, "invalid", "failed to decode request "
                                               "body: organization not found")
            if user_id is None:
                user_id = self.user_id
            elif user_id not in self._users:
                raise ApiError(404, "not found", "user not found")
            now = _now()
            token = _new_token()
            while token in self._by_token or token == self.admin_token:
                token = _new_token()
            rec = {"id": self._new_id(), "token": token, "status": status,
                   "description": desc, "orgID": org_id, "userID": user_id,
                   "permissions": perms, "createdAt": now, "updatedAt": now}
            self._auths[rec["id"]] = rec
            self._by_token[token] = rec
            return _json_response(201, self._auth_json(rec))

    @staticmethod
    def _decode_permission(p, i):
        where = f"permissions[{i}]"
        if not isinstance(p, dict):
            raise _invalid_json(f"{where} must be an object")
        action = p.get("action")
        if action is None:
            action = ""
        if not isinstance(action, str):
            raise _invalid_json(f"{where}.action must be a string")
        res = p.get("resource")
        if res is None:
            res = {}
        if not isinstance(res, dict):
            raise _invalid_json(f"{where}.resource must be an object")
        out = {}
        rtype = res.get("type")
        if rtype is None:
            rtype = ""
        if not isinstance(rtype, str):
            raise _invalid_json(f"{where}.resource.type must be a string")
        out["type"] = rtype
        for key in ("id", "orgID"):
            if res.get(key) is not None:
                out[key] = _body_id(res[key], f"{where}.resource.{key}")
        for key in ("name", "org"):
            if res.get(key) is not None:
                if not isinstance(res[key], str):
                    raise _invalid_json(
                        f"{where}.resource.{key} must be a string")
                if res[key]:
                    out[key] = res[key]
        return {"action": action, "resource": out}

    def _list_auths(self, req):
        self._require_admin(req, "read:authorizations")
        org_id, org_name = req.param("orgID"), req.param("org")
        user_id, user_name = req.param("userID"), req.param("user")
        if org_id is not None:
            org_id = _parse_id(org_id)
        if user_id is not None:
            user_id = _parse_id(user_id)
        with self._lock:
            if org_name is not None:
                found = [o for o in self._orgs.values()
                         if o["name"] == org_name]
                if not found:
                    raise ApiError(404, "not found", f'organization name '
                                                     f'"{org_name}" not found')
                by_name_org = found[0]["id"]
            if user_name is not None:
                found = [u for u in self._users.values()
                         if u["name"] == user_name]
                if not found:
                    raise ApiError(404, "not found", "user not found")
                by_name_user = found[0]["id"]
            result = []
            for r in self._auths.values():
                if org_id is not None and r["orgID"] != org_id:
                    continue
                if org_name is not None and r["orgID"] != by_name_org:
                    continue
                if user_id is not None and r["userID"] != user_id:
                    continue
                if user_name is not None and r["userID"] != by_name_user:
                    continue
                result.append(self._auth_json(r))
        return _json_response(200, {
            "links": {"self": "/api/v2/authorizations"},
            "authorizations": result})

    def _find_auth(self, raw_id):
        auth_id = _parse_id(raw_id)
        rec = self._auths.get(auth_id)
        if rec is None:
            raise ApiError(404, "not found", "authorization not found")
        return rec

    def _get_auth(self, req, raw_id):
        who, own = self._authenticate(req)
        with self._lock:
            rec = self._find_auth(raw_id)
            if who != "admin" and own is not rec:
                raise _forbidden("read:authorizations")
            return _json_response(200, self._auth_json(rec))

    def _patch_auth(self, req, raw_id):
        who, _ = self._authenticate(req)
        _parse_id(raw_id)
        data = req.json_body()
        if not isinstance(data, dict):
            raise _invalid_json("expected a JSON object")
        status, desc = data.get("status"), data.get("description")
        if status is not None and not isinstance(status, str):
            raise _invalid_json("status must be a string")
        if desc is not None and not isinstance(desc, str):
            raise _invalid_json("description must be a string")
        if status is not None and status not in ("active", "inactive"):
            raise ApiError(400, "invalid", "invalid status")
        with self._lock:
            rec = self._find_auth(raw_id)
            if who != "admin":
                raise _forbidden("write:authorizations")
            if status is not None:
                rec["status"] = status
            if desc is not None:
                rec["description"] = desc
            rec["updatedAt"] = _now()
            return _json_response(200, self._auth_json(rec))

    def _delete_auth(self, req, raw_id):
        who, _ = self._authenticate(req)
        with self._lock:
            rec = self._find_auth(raw_id)
            if who != "admin":
                raise _forbidden("write:authorizations")
            del self._auths[rec["id"]]
            self._by_token.pop(rec["token"], None)
            self._deleted.append(rec["id"])
        return (204, [], b"")

    # -- control endpoints (test only) -------------------------------------

    def _control(self, method, path, body):
        """(response, action to run after answering or None)."""
        routes = {"/_fake/state": ("GET",), "/_fake/faults": ("GET", "POST"),
                  "/_fake/reset": ("POST",)}
        if path not in routes:
            return _error_response(ApiError(404, "not found",
                                            "path not found")), None
        if method not in routes[path]:
            allow = ", ".join(routes[path])
            return _error_response(ApiError(
                405, "method not allowed", f"allow: {allow}",
                [("Allow", allow)])), None
        if path == "/_fake/state":
            return _json_response(200, self.state()), None
        if path == "/_fake/reset":
            self.reset()
            return _json_response(200, self.state()), None
        if method == "GET":
            return _json_response(200, self.fault), None
        try:
            spec = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, ValueError) as e:
            return _error_response(_invalid_json(str(e))), None
        try:
            fault = normalize_fault(spec)
        except ValueError as e:
            return _error_response(ApiError(400, "invalid", str(e))), None
        if fault["mode"] != "down":
            return _json_response(200, self._set_fault(fault)), None
        # down: answer first, then close the listener.
        return _json_response(200, fault), lambda: self._set_fault(fault)


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Fake InfluxDB 2.x authorizations API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port (0: pick a free one)")
    parser.add_argument("--admin-token-file", required=True,
                        help="file holding the admin (operator) token")
    parser.add_argument("--org", required=True,
                        help="name of the organization that exists")
    parser.add_argument("--user", default="admin",
                        help="name of the admin user (default: admin)")
    parser.add_argument("--ready-file",
                        help="also write the ready line to this file")
    parser.add_argument("--verbose", action="store_true",
                        help="log requests to stderr")
    args = parser.parse_args(argv)
    try:
        with open(args.admin_token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        parser.error(f"cannot read --admin-token-file: {e}")
    if not token:
        parser.error("--admin-token-file is empty")
    if not args.org:
        parser.error("--org must not be empty")

    fake = FakeInfluxDB2(token, args.org, user_name=args.user,
                         verbose=args.verbose)
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        port = fake.start(args.port)
    except OSError as e:
        sys.stderr.write(f"influxdb2-fake: cannot listen on 127.0.0.1:"
                         f"{args.port}: {e}\n")
        return 1
    line = f"influxdb2-fake ready port={port} org_id={fake.org_id}"
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(line + "\n")
        os.replace(tmp, args.ready_file)
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    while not done.wait(1.0):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
