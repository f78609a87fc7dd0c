"""HTTP under slow, idle and many connections (issue 9), and strict HTTP
framing: every refusal is a status with the usual failure object.

The flood binds its connections to other loopback addresses (127.0.0.2 and
up) so that a per-peer limit can tell them from the normal client on
127.0.0.1; nothing leaves loopback.
"""

import json
import selectors
import socket
import threading
import time

import pytest

from tlmd_harness import assert_failure, assert_success, http_raw, http_request

READ_MS = 2000
IDLE_MS = 1500
#: A request line and headers, sent one byte a second, never finished.
SLOW_HEADER = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 200


def start_daemon(tlmd_factory, read_ms=READ_MS, idle_ms=IDLE_MS, per_peer=32,
                 extra=()):
    return tlmd_factory(args=["--http-read-timeout-ms", str(read_ms),
                              "--http-idle-timeout-ms", str(idle_ms),
                              "--http-max-per-peer", str(per_peer), *extra])


def connect_from(port, source, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_within(sock, timeout):
    """True if the server closes `sock` (EOF or reset) within `timeout`;
    whatever it sends first (e.g. a 408) is read and dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# ------------------------------------------------------------ the flood

class SlowFlood:
    """`slow` connections that send SLOW_HEADER one byte a second, spread
    over `peers` loopback addresses, plus `silent` connections that send
    nothing; each one the server closes is opened again at once, until
    `stop()`. Records how long each lived."""

    def __init__(self, port, slow=200, silent=40, peers=10):
        self.port = port
        self.plan = [(f"127.0.0.{2 + i % peers}", True) for i in range(slow)]
        self.plan += [(f"127.0.0.{2 + peers + i % 2}", False) for i in range(silent)]
        self.lifetimes = []  # seconds from connect to the server's close
        self.refused = 0     # connects that failed outright
        self.open = {}
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, slot):
        source, slow = self.plan[slot]
        try:
            s = connect_from(self.port, source)
        except OSError:
            self.refused += 1
            return
        s.setblocking(False)
        state = {"slot": slot, "sock": s, "born": time.monotonic(),
                 "sent": 0, "next": time.monotonic(), "slow": slow}
        self.open[s] = state
        self._sel.register(s, selectors.EVENT_READ, state)

    def _close(self, state, record):
        s = state["sock"]
        self._sel.unregister(s)
        del self.open[s]
        if record:
            self.lifetimes.append(time.monotonic() - state["born"])
        s.close()

    def _run(self):
        for slot in range(len(self.plan)):
            self._open(slot)
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.05):
                state = key.data
                try:
                    data = state["sock"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._close(state, True)
                    self._open(state["slot"])
            now = time.monotonic()
            for state in list(self.open.values()):
                if state["slow"] and now >= state["next"] and state["sent"] < len(SLOW_HEADER):
                    try:
                        state["sock"].send(SLOW_HEADER[state["sent"]:state["sent"] + 1])
                        state["sent"] += 1
                    except OSError:
                        pass
                    state["next"] = now + 1.0

    def start(self):
        self._thread.start()
        wait = time.monotonic() + 10
        while len(self.open) + self.refused < len(self.plan) and time.monotonic() < wait:
            time.sleep(0.05)

    def stop(self):
        """Stops reopening; the connections still open stay open."""
        self._stop.set()
        self._thread.join(10)


def measure(port, seconds, timeout=2.0):
    """A normal client on 127.0.0.1: sequential GET /healthz, each on a new
    connection. Returns (latencies in s, failures)."""
    latencies, failures = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            r = http_request(port, "GET", "/healthz", timeout=timeout)
            if r.status != 200:
                failures.append(f"status {r.status}")
        except OSError as e:
            failures.append(repr(e))
        latencies.append(time.monotonic() - t0)
        time.sleep(0.02)
    return latencies, failures


def run_flood(port, before_s=2.0, during_s=6.0, **flood):
    """Latency before and during a flood; returns a dict of results."""
    before, before_failed = measure(port, before_s)
    f = SlowFlood(port, **flood)
    f.start()
    try:
        during, during_failed = measure(port, during_s)
    finally:
        f.stop()
    return {"flood": f, "before": before, "during": during,
            "before_failed": before_failed, "during_failed": during_failed,
            "p99_before": percentile(before, 99),
            "p99_during": percentile(during, 99)}


@pytest.mark.parametrize("threads", [None, 64], ids=["default_threads", "64_threads_shedding"])
def test_slowloris_flood_leaves_http_to_normal_clients(tlmd_factory, threads):
    """200 connections sending a header byte a second and 40 sending
    nothing, from 12 addresses (none over the per-peer limit): a normal
    client is answered within 2 s every time, and every slow connection is
    closed by its read deadline at the latest. With the default workers
    (more than the flood) nothing waits; with 64 the connections waiting
    longest on their client are shed."""
    tlmd = start_daemon(tlmd_factory,
                        extra=["--http-threads", str(threads)] if threads else [])
    res = run_flood(tlmd.http_port)
    f = res["flood"]
    print(f"p99 before {res['p99_before'] * 1000:.1f} ms, during "
          f"{res['p99_during'] * 1000:.1f} ms over {len(res['during'])} "
          f"requests; slow connections closed: {len(f.lifetimes)}, longest "
          f"lived {max(f.lifetimes, default=0):.2f} s")
    assert not res["before_failed"], res["before_failed"][:5]
    assert not res["during_failed"], res["during_failed"][:5]
    assert max(res["during"]) < 2.0, res["p99_during"]
    assert len(res["during"]) >= 20
    # Every connection the server closed lived at most its read deadline
    # (plus the watchdog's tick and scheduling slack).
    assert f.lifetimes, "no slow connection was ever closed"
    assert max(f.lifetimes) < READ_MS / 1000 + 1.0, max(f.lifetimes)
    # The ones still open are closed by their deadline too.
    left = list(f.open)
    deadline = time.monotonic() + READ_MS / 1000 + 1.5
    for s in left:
        assert closed_within(s, max(0.05, deadline - time.monotonic())), \
            "a slow connection outlived its read deadline"
        s.close()
    assert tlmd.alive()


# ------------------------------------------------------ deadlines, one by one

def test_slow_header_is_cut_at_read_deadline_with_408(tlmd_factory):
    tlmd = start_daemon(tlmd_factory)
    s = connect_from(tlmd.http_port, "127.0.0.1")
    t0 = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
    s.settimeout(READ_MS / 1000 + 2)
    reply = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except OSError:
        pass
    elapsed = time.monotonic() - t0
    s.close()
    assert READ_MS / 1000 - 0.3 <= elapsed < READ_MS / 1000 + 1.0, elapsed
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    body = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert_failure(body, "invalid_request")


def test_silent_connection_is_closed_at_read_deadline(tlmd_factory):
    tlmd = start_daemon(tlmd_factory)
    s = connect_from(tlmd.http_port, "127.0.0.1")
    t0 = time.monotonic()
    assert closed_within(s, READ_MS / 1000 + 1.0)
    assert time.monotonic() - t0 >= READ_MS / 1000 - 0.3
    s.close()


def test_slow_body_is_cut_at_read_deadline(tlmd_factory):
    tlmd = start_daemon(tlmd_factory)
    s = connect_from(tlmd.http_port, "127.0.0.1")
    t0 = time.monotonic()
    s.sendall(b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    for _ in range(int(READ_MS / 1000) + 2):
        time.sleep(0.5)
        try:
            s.sendall(b" ")
        except OSError:
            break
    assert closed_within(s, READ_MS / 1000 + 1.0)
    assert time.monotonic() - t0 < READ_MS / 1000 + 2.0
    s.close()


def test_idle_keep_alive_is_closed_after_idle_timeout(tlmd_factory):
    tlmd = start_daemon(tlmd_factory)
    s = connect_from(tlmd.http_port, "127.0.0.1")
    for _ in range(3):  # keep-alive serves several requests
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, "closed while a request was answered"
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b"Keep-Alive" in reply
    t0 = time.monotonic()
    assert closed_within(s, IDLE_MS / 1000 + 1.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert elapsed >= IDLE_MS / 1000 - 0.3, elapsed


# ----------------------------------------------------------- per peer

def _read_all(sock, timeout=5.0):
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    return out


def test_per_peer_limit_refuses_extra_connections_with_503(tlmd_factory):
    tlmd = start_daemon(tlmd_factory, read_ms=10000, per_peer=4)
    held = [connect_from(tlmd.http_port, "127.0.0.3") for _ in range(4)]
    time.sleep(0.2)
    extra = connect_from(tlmd.http_port, "127.0.0.3")
    reply = _read_all(extra)
    extra.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), reply[:300]
    assert b"connection: close" in head.lower(), head
    assert_failure(json.loads(body), "overloaded")
    # another address is not affected
    r = http_request(tlmd.http_port, "GET", "/healthz")
    assert r.status == 200
    # a connection that closes frees its place
    held.pop().close()

    def admitted():
        s = connect_from(tlmd.http_port, "127.0.0.3")
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _read_all(s).startswith(b"HTTP/1.1 200")
        finally:
            s.close()
    deadline = time.monotonic() + 3
    while not admitted():
        assert time.monotonic() < deadline, "the freed place was never reused"
        time.sleep(0.1)
    for s in held:
        s.close()


# ------------------------------------------------------ protocol defects

def _raw(tlmd, data):
    status, raw, resp = http_raw(tlmd.http_port, data, timeout=5)
    return status, raw, (resp.json if resp is not None else None)


def _req(line, headers=b"", body=b""):
    return line + b"\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n" + body


BAD_FRAMING = [
    ("percent_alone", _req(b"GET /v1/leases/% HTTP/1.1"), 400),
    ("percent_zz", _req(b"GET /v1/leases/%zz HTTP/1.1"), 400),
    ("percent_in_query", _req(b"GET /v1/leases?tag=%g1 HTTP/1.1"), 400),
    ("length_abc", _req(b"POST /v1/actions HTTP/1.1", b"Content-Length: abc\r\n",
                        b'{"action":"health"}'), 400),
    ("length_2_64", _req(b"POST /v1/actions HTTP/1.1",
                         b"Content-Length: 18446744073709551616\r\n",
                         b'{"action":"health"}'), 400),
    ("two_lengths", _req(b"POST /v1/actions HTTP/1.1",
                         b"Content-Length: 19\r\nContent-Length: 20\r\n",
                         b'{"action":"health"} '), 400),
    ("version_9_9", _req(b"GET /healthz HTTP/9.9"), 505),
    ("version_2_0", _req(b"GET /healthz HTTP/2.0"), 505),
]


@pytest.mark.parametrize("name,data,status", BAD_FRAMING, ids=[c[0] for c in BAD_FRAMING])
def test_bad_framing_gets_status_and_failure_object(tlmd, name, data, status):
    got, raw, body = _raw(tlmd, data)
    assert got == status, raw[:300]
    assert_failure(body, "invalid_request")
    assert tlmd.http("GET", "/healthz").status == 200


def test_same_content_length_twice_is_accepted(tlmd):
    got, raw, body = _raw(tlmd, _req(b"POST /v1/actions HTTP/1.1",
                                     b"Content-Length: 19\r\nContent-Length: 19\r\n",
                                     b'{"action":"health"}'))
    assert got == 200, raw[:300]
    assert_success(body)


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/v1/leases", "GET, POST"),
    ("DELETE", "/healthz", "GET"),
    ("GET", "/v1/actions", "POST"),
    ("PATCH", "/v1/leases/abcdefghijklmnop", "GET, DELETE"),
    ("GET", "/v1/leases/abcdefghijklmnop/renew", "POST"),
])
def test_method_not_allowed_is_405_with_allow(tlmd, method, path, allow):
    r = tlmd.http(method, path)
    assert r.status == 405, r
    assert r.headers.get("allow") == allow, r.headers
    assert_failure(r.json, "invalid_request")


def test_escaped_slash_stays_inside_the_id(tlmd):
    r = tlmd.http("POST", "/v1/leases", {"renewable": True, "options": {"ttl": 60000}})
    assert r.status == 201, r
    lease = r.json["lease"]
    r = tlmd.http("POST", f"/v1/leases/{lease['id']}%2Frenew", {"ttl": 120000})
    assert r.status in (404, 405), r  # not a renew of the lease
    r = tlmd.http("GET", f"/v1/leases/{lease['id']}%2Frenew")
    assert r.status == 404, r
    assert_failure(r.json, "not_found")
    r = tlmd.http("GET", f"/v1/leases/{lease['id']}")
    assert r.status == 200 and r.json["lease"]["expires"] == lease["expires"], r


NUL_MESSAGE = b'{"action":"health"}\x00junk'


def test_nul_byte_refused_over_http(tlmd):
    r = tlmd.http("POST", "/v1/actions", NUL_MESSAGE)
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")
    r = tlmd.http("POST", "/v1/leases", b'{"options":{"ttl":60000}}\x00junk')
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")
    assert tlmd.api("http").health()["leases"] == 0


def test_nul_byte_refused_over_tcp(tlmd):
    c = tlmd.tcp()
    try:
        c.send_raw(NUL_MESSAGE + b"\n")
        assert_failure(c.recv(), "invalid_request")
        assert_success(c.request({"action": "health"}))
    finally:
        c.close()
