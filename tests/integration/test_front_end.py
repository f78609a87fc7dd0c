"""The front end's contract under load (issue 12): what the TCP and HTTP
front ends must do whatever they are built on. Behaviour only, no timing
assertions beyond "answered before a deadline" (latency is for bench/).

* 5,000 concurrent TCP connections, over and under --tcp-max-connections:
  each one is served or closed cleanly, the daemon stays up and gives its
  file descriptors back;
* a TCP client pipelining 100,000 requests and reading nothing: memory
  stays bounded and another client is served meanwhile;
* HTTP slowloris on 200 connections from one address while a keep-alive
  client works: the client's requests all succeed, the slow ones end at
  the read deadline;
* a body-less POST pipelined before other requests is answered at once;
* 50 HTTP requests in one write on one keep-alive connection, answered in
  order.

Loopback only; the whole file takes well under a minute.
"""

import errno
import http.client
import json
import os
import selectors
import socket
import threading
import time

import pytest

from test_http_hardening import SLOW_HEADER, connect_from
from test_tcp_hardening import _raise_fd_limit, _status_kib
from tlmd_harness import (HttpResponse, TcpClient, assert_failure,
                          assert_success, check_lease, wait_until)

MIB = 1024 * 1024


def fd_count(d):
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def rss(d):
    """Bytes resident now (VmRSS)."""
    return _status_kib(d.proc.pid, "VmRSS") * 1024


def peak_rss(d):
    """Bytes: the peak resident set so far (VmHWM)."""
    return _status_kib(d.proc.pid, "VmHWM") * 1024


def line(obj):
    return json.dumps(obj).encode() + b"\n"


# ===================================================== 5,000 TCP connections

class FleetConn:
    """One connection of the fleet: connect, create, get the lease."""

    __slots__ = ("i", "sock", "state", "buf", "lease", "how", "notice",
                 "bad", "pings")

    def __init__(self, i, sock):
        self.i = i
        self.sock = sock
        self.state = "connecting"  # -> create_sent -> get_sent -> served
        self.buf = b""
        self.lease = None
        self.how = None       # why it is closed: eof, reset, connect errno
        self.notice = None    # the `overloaded` failure line, if any
        self.bad = None       # anything the contract does not allow
        self.pings = 0        # answered requests after `served`

    @property
    def closed(self):
        return self.how is not None


class Fleet:
    """`n` TCP connections driven by one selector thread (the caller's).

    Each connection, once connected, sends a `create`, then a `get` of the
    lease it got; it is *served* when both are answered correctly, and then
    stays open, idle. The server may instead send a failure line
    `overloaded` and close it, or close it without a word; anything else
    (another reply, a reply out of order, a connection that neither answers
    nor closes) is recorded as a breach."""

    def __init__(self, port, n, max_connecting=256):
        self.addr = ("127.0.0.1", port)
        self.n = n
        self.max_connecting = max_connecting
        self.sel = selectors.DefaultSelector()
        self.conns = []
        self.connecting = 0

    # -- driving
    def _open_next(self):
        i = len(self.conns)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        c = FleetConn(i, s)
        self.conns.append(c)
        err = s.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            self._close(c, f"connect:{errno.errorcode.get(err, err)}")
            return
        self.connecting += 1
        self.sel.register(s, selectors.EVENT_WRITE, c)

    def _close(self, c, how):
        if c.closed:
            return
        c.how = how
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _send(self, c, obj):
        data = line(obj)
        try:
            sent = c.sock.send(data)
        except (ConnectionResetError, BrokenPipeError):
            self._close(c, "reset")
            return
        except BlockingIOError:
            sent = 0
        if sent != len(data):  # a few dozen bytes into an idle socket
            c.bad = f"could not send {len(data)} bytes at once ({sent})"

    def _connected(self, c):
        self.connecting -= 1
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._close(c, f"connect:{errno.errorcode.get(err, err)}")
            return
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sel.modify(c.sock, selectors.EVENT_READ, c)
        c.state = "create_sent"
        self._send(c, {"action": "create", "options": {"ttl": 600000},
                       "request_id": f"c{c.i}"})

    def _readable(self, c):
        try:
            chunk = c.sock.recv(65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError):
            self._close(c, "reset")
            return
        if not chunk:
            self._close(c, "eof")
            return
        c.buf += chunk
        while b"\n" in c.buf and not c.closed:
            raw, c.buf = c.buf.split(b"\n", 1)
            self._on_line(c, raw)

    def _on_line(self, c, raw):
        try:
            r = json.loads(raw)
        except ValueError:
            c.bad = f"not JSON: {raw[:200]!r}"
            return
        if c.notice is not None:
            c.bad = f"a line after the overloaded notice: {raw[:200]!r}"
        elif isinstance(r, dict) and r.get("result") == "failure":
            try:
                assert_failure(r, "overloaded")
                assert "request_id" not in r or r["request_id"] in (
                    f"c{c.i}", f"g{c.i}"), r
            except AssertionError as e:
                c.bad = f"in state {c.state}: {e}"
                return
            c.notice = r
        elif c.state == "create_sent":
            if r.get("result") != "success" or r.get("request_id") != f"c{c.i}":
                c.bad = f"create answered with {raw[:200]!r}"
                return
            try:
                c.lease = check_lease(r["lease"])
            except (AssertionError, KeyError) as e:
                c.bad = f"create answered with a bad lease: {e!r}"
                return
            c.state = "get_sent"
            self._send(c, {"action": "get", "token_id": c.lease["id"],
                           "request_id": f"g{c.i}"})
        elif c.state == "get_sent":
            if (r.get("result") != "success" or r.get("request_id") != f"g{c.i}"
                    or r.get("lease") != c.lease):
                c.bad = f"get answered with {raw[:200]!r}"
                return
            c.state = "served"
        elif c.state == "served" and r.get("request_id") == f"p{c.i}-{c.pings}" \
                and r.get("result") == "success" and r.get("lease") == c.lease:
            c.pings += 1
        else:
            c.bad = f"unexpected line in state {c.state}: {raw[:200]!r}"

    def pump(self, timeout=0.05):
        for key, events in self.sel.select(timeout):
            c = key.data
            if c.state == "connecting":
                self._connected(c)
            else:
                self._readable(c)

    # -- phases
    def settled(self, c):
        """Served and idle, or closed; a connection with its notice but not
        yet closed is still on its way."""
        return c.closed or (c.state == "served" and c.notice is None)

    def run(self, deadline_s):
        """Opens all `n` (at most `max_connecting` connects outstanding) and
        drives them until every one is settled or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            while len(self.conns) < self.n and self.connecting < self.max_connecting:
                self._open_next()
            if len(self.conns) == self.n and all(self.settled(c) for c in self.conns):
                return True
            self.pump()
        return False

    def drain(self, until, deadline_s):
        """Pumps until `until()` or the deadline; returns until()."""
        deadline = time.monotonic() + deadline_s
        while not until() and time.monotonic() < deadline:
            self.pump()
        return until()

    def ping_open(self, deadline_s):
        """Every open served connection gets its lease once more; returns
        the connections that did not answer."""
        targets = [c for c in self.conns if not c.closed and c.state == "served"]
        for c in targets:
            self._send(c, {"action": "get", "token_id": c.lease["id"],
                           "request_id": f"p{c.i}-{c.pings}"})
        want = {c.i: c.pings + 1 for c in targets}
        self.drain(lambda: all(c.pings >= want[c.i] or c.closed or c.bad
                               for c in targets), deadline_s)
        return [c for c in targets if c.pings < want[c.i]]

    def open_conns(self):
        return [c for c in self.conns if not c.closed]

    def breaches(self):
        return [(c.i, c.state, c.bad) for c in self.conns if c.bad]

    def summary(self):
        served = sum(c.state == "served" for c in self.conns)
        return {
            "served": served,
            "served_then_evicted": sum(c.state == "served" and c.closed
                                       for c in self.conns),
            "served_then_evicted_with_notice": sum(
                c.state == "served" and c.closed and c.notice is not None
                for c in self.conns),
            "closed_unserved_with_notice": sum(c.state != "served" and c.closed
                                               and c.notice is not None
                                               for c in self.conns),
            "closed_unserved_silently": sum(c.state != "served" and c.closed
                                            and c.notice is None
                                            for c in self.conns),
            "closed_by_reset": sum(c.how == "reset" for c in self.conns),
            "connect_failed": sum((c.how or "").startswith("connect:")
                                  for c in self.conns),
            "open": len(self.open_conns()),
        }

    def close_all(self):
        for c in self.conns:
            self._close(c, c.how or "client")
        self.sel.close()


def fd_baseline(d):
    """tlmd's open descriptors at rest, once a TCP and an HTTP client have
    come and gone (its listeners may open theirs just after the ready
    line): the same count over 0.25 s."""
    with d.tcp() as c:
        assert_success(c.request({"action": "health"}))
    assert d.http("GET", "/healthz").status == 200
    samples = []

    def steady():
        samples.append(fd_count(d))
        return len(samples) >= 5 and len(set(samples[-5:])) == 1

    wait_until(steady, 10, interval=0.05, what="tlmd's descriptors at rest")
    return samples[-1]


def fresh_round_trip(d):
    with TcpClient(d.tcp_port, timeout=10) as c:
        lease = check_lease(assert_success(c.request({"action": "create"}))["lease"])
        assert assert_success(c.request({"action": "get",
                                         "token_id": lease["id"]}))["lease"] == lease


def assert_fds_return(d, base, slack=16, timeout=20):
    wait_until(lambda: fd_count(d) <= base + slack, timeout,
               interval=0.1,
               what=f"tlmd's open descriptors back near {base} "
                    f"(now {fd_count(d)})")


N_CONNS = 5000


@pytest.mark.parametrize("connecting", [N_CONNS, 256], ids=["burst", "paced"])
def test_5000_connections_over_the_limit_served_or_closed_cleanly(
        tlmd_factory, capsys, connecting):
    """--tcp-max-connections 1000 and 5,000 clients, each sending a create
    then a get, connecting all at once (burst: most are evicted before
    their create is answered) or at most 256 connects outstanding (paced:
    most are served, then evicted while idle). Every one is served, or
    told `overloaded` and closed, or closed; none hangs; one served and
    then closed (idle, so only for the limit) was told `overloaded` first.
    Once they settle no more than the limit are open and each of those
    still answers; a fresh client is served, and after all close tlmd's
    descriptors return to their baseline."""
    limit = 1000
    _raise_fd_limit(2 * N_CONNS + 512)
    d = tlmd_factory(args=["--tcp-max-connections", str(limit)])
    base = fd_baseline(d)
    fleet = Fleet(d.tcp_port, N_CONNS, max_connecting=connecting)
    t0 = time.monotonic()
    try:
        settled = fleet.run(deadline_s=40)
        elapsed = time.monotonic() - t0
        assert not fleet.breaches(), fleet.breaches()[:10]
        stuck = [(c.i, c.state) for c in fleet.conns if not fleet.settled(c)]
        assert settled and not stuck, \
            f"{len(stuck)} connections neither served nor closed: {stuck[:10]}"
        # Connections evicted may still be on their way out.
        assert fleet.drain(lambda: len(fleet.open_conns()) <= limit, 10), \
            f"{len(fleet.open_conns())} connections open over a limit of {limit}"
        summary = fleet.summary()
        with capsys.disabled():
            print(f"\n[tcp fleet over limit] {elapsed:.1f} s: {summary}")
        assert summary["served"] >= 1
        assert summary["served_then_evicted_with_notice"] == \
            summary["served_then_evicted"], "idle connections closed without a word"
        assert summary["open"] >= 1, "every connection was closed"
        # Every connection still open is really served, not a zombie.
        silent = fleet.ping_open(deadline_s=20)
        assert not silent, f"{len(silent)} open connections do not answer"
        assert not fleet.breaches(), fleet.breaches()[:10]
        assert d.alive(), d.status()
        fresh_round_trip(d)
    finally:
        fleet.close_all()
    assert d.alive(), d.status()
    assert_fds_return(d, base)
    fresh_round_trip(d)


def test_5000_connections_under_the_limit_all_served(tlmd_factory, capsys):
    """--tcp-max-connections 6000: all 5,000 are served, none is closed,
    and all 5,000 answer again while all are open."""
    _raise_fd_limit(2 * N_CONNS + 512)
    d = tlmd_factory(args=["--tcp-max-connections", "6000"])
    base = fd_baseline(d)
    fleet = Fleet(d.tcp_port, N_CONNS)
    t0 = time.monotonic()
    try:
        settled = fleet.run(deadline_s=40)
        elapsed = time.monotonic() - t0
        summary = fleet.summary()
        with capsys.disabled():
            print(f"\n[tcp fleet under limit] {elapsed:.1f} s: {summary}")
        assert not fleet.breaches(), fleet.breaches()[:10]
        assert settled, f"not all settled in time: {summary}"
        closed = [(c.i, c.state, c.how, c.notice) for c in fleet.conns if c.closed]
        assert not closed, f"{len(closed)} closed under the limit: {closed[:10]}"
        assert summary["served"] == N_CONNS, summary
        silent = fleet.ping_open(deadline_s=20)
        assert not silent, f"{len(silent)} connections do not answer"
        assert all(not c.closed for c in fleet.conns)
        assert not fleet.breaches(), fleet.breaches()[:10]
        fresh_round_trip(d)
    finally:
        fleet.close_all()
    assert d.alive(), d.status()
    assert_fds_return(d, base)
    fresh_round_trip(d)


# ========================================== 100,000 pipelined, none read

def test_100k_pipelined_requests_never_read_stay_bounded(tlmd_factory, capsys):
    """One client writes 100,000 create/get lines (gets of 4 KB leases, so
    their replies would be about 300 MiB if tlmd held them all) as fast as
    its socket takes them and reads nothing. Another client's create+get
    round trips all succeed meanwhile; tlmd's resident set stays within
    its baseline + 200 MiB; once the writer closes, tlmd is healthy."""
    n, bound = 100_000, 200 * MIB
    d = tlmd_factory()
    normal = d.tcp()
    ids = [check_lease(assert_success(normal.request(
        {"action": "create", "options": {"ttl": 600000},
         "meta": {"pad": "p" * 4000, "k": k}}))["lease"])["id"] for k in range(8)]
    payload = b"".join(
        line({"action": "create", "options": {"ttl": 600000}, "request_id": i})
        if i % 4 == 0 else
        line({"action": "get", "token_id": ids[i % 8], "request_id": i})
        for i in range(n))
    rss0, peak0 = rss(d), peak_rss(d)

    writer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    writer.settimeout(5)
    writer.connect(("127.0.0.1", d.tcp_port))
    writer.setblocking(False)
    progress = {"sent": 0, "last": time.monotonic(), "error": None}
    stop = threading.Event()

    def write():
        view = memoryview(payload)
        sel = selectors.DefaultSelector()
        sel.register(writer, selectors.EVENT_WRITE)
        try:
            while progress["sent"] < len(payload) and not stop.is_set():
                if not sel.select(0.1):
                    continue
                try:
                    k = writer.send(view[progress["sent"]:progress["sent"] + MIB])
                except BlockingIOError:
                    continue
                progress["sent"] += k
                progress["last"] = time.monotonic()
        except OSError as e:
            progress["error"] = repr(e)
        finally:
            sel.close()

    t = threading.Thread(target=write, daemon=True)
    t.start()

    def writer_done_or_stalled():
        return (not t.is_alive()
                or time.monotonic() - progress["last"] > 2.0)

    pairs, max_rss = 0, rss0
    deadline = time.monotonic() + 40
    try:
        while pairs < 200 or not writer_done_or_stalled():
            assert time.monotonic() < deadline, \
                f"writer still busy after 40 s: {progress}"
            lease = check_lease(assert_success(normal.request(
                {"action": "create", "request_id": f"n{pairs}"}, timeout=15))["lease"])
            got = assert_success(normal.request(
                {"action": "get", "token_id": lease["id"],
                 "request_id": f"m{pairs}"}, timeout=15))
            assert got["request_id"] == f"m{pairs}" and got["lease"] == lease
            pairs += 1
            max_rss = max(max_rss, rss(d))
            assert max_rss - rss0 < bound, \
                f"VmRSS grew {(max_rss - rss0) / MIB:.0f} MiB"
        growth_peak = peak_rss(d) - peak0
        with capsys.disabled():
            print(f"\n[tcp unread] writer sent {progress['sent'] / MIB:.1f} of "
                  f"{len(payload) / MIB:.1f} MiB "
                  f"({'all' if progress['sent'] == len(payload) else 'stalled'}); "
                  f"{pairs} round trips meanwhile; VmRSS +"
                  f"{(max_rss - rss0) / MIB:.1f} MiB, VmHWM +{growth_peak / MIB:.1f} MiB")
        assert progress["error"] is None, progress
        assert progress["sent"] >= MIB, f"the writer barely wrote: {progress}"
        assert growth_peak < bound, f"VmHWM grew {growth_peak / MIB:.0f} MiB"
        assert d.alive(), d.status()
    finally:
        stop.set()
        t.join(5)
        writer.close()
    # The reader-less client is gone: tlmd is healthy and serves.
    assert_success(normal.request({"action": "health"}, timeout=15))
    fresh_round_trip(d)
    assert rss(d) - rss0 < bound
    normal.close()
    assert d.alive(), d.status()


# ====================================================== HTTP slowloris

READ_MS = 1000
SLOW_N = 200
#: Faster than one byte per read deadline, so that only a deadline on the
#: whole request (not on each read) ends these connections.
SLOW_BYTE_S = 0.25


class SlowHeaders:
    """SLOW_N connections from 127.0.0.1, each sending SLOW_HEADER a byte
    every SLOW_BYTE_S and never finishing it; each one the server closes is
    recorded (lifetime, what it sent back) and, until `stop_reopening()`,
    opened again. Runs on its own thread."""

    def __init__(self, port):
        self.port = port
        self.ended = []      # (lifetime s, bytes the server sent)
        self.failed_connects = []
        self.open = {}
        self.reopen = True
        self.lock = threading.Lock()
        self._quit = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        try:
            s = connect_from(self.port, "127.0.0.1")
        except OSError as e:
            self.failed_connects.append(repr(e))
            return
        s.setblocking(False)
        now = time.monotonic()
        st = {"sock": s, "born": now, "sent": 0, "next": now, "reply": b""}
        self.open[s] = st
        self._sel.register(s, selectors.EVENT_READ, st)

    def _end(self, st):
        self._sel.unregister(st["sock"])
        del self.open[st["sock"]]
        st["sock"].close()
        with self.lock:
            self.ended.append((time.monotonic() - st["born"], st["reply"]))
        if self.reopen:
            self._open()

    def _run(self):
        for _ in range(SLOW_N):
            self._open()
        while not self._quit.is_set():
            for key, _ in self._sel.select(0.02):
                st = key.data
                try:
                    data = st["sock"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    st["reply"] += data
                else:
                    self._end(st)
            now = time.monotonic()
            for st in list(self.open.values()):
                if now >= st["next"] and st["sent"] < len(SLOW_HEADER):
                    try:
                        st["sock"].send(SLOW_HEADER[st["sent"]:st["sent"] + 1])
                        st["sent"] += 1
                    except OSError:
                        pass  # the close is seen by recv
                    st["next"] = now + SLOW_BYTE_S

    def start(self):
        self._thread.start()

    def ended_count(self):
        with self.lock:
            return len(self.ended)

    def stop_reopening(self):
        self.reopen = False

    def quit(self):
        self._quit.set()
        self._thread.join(10)
        for st in list(self.open.values()):
            st["sock"].close()


def test_slowloris_200_while_keep_alive_client_works(tlmd_factory, capsys):
    """200 connections from 127.0.0.1 (per-peer limit raised) each trickle
    a request header that never ends, and are reopened when closed, while
    a keep-alive client does create+get pairs until at least 200 pairs are
    done and at least 200 slow connections have ended. Every request of
    the client succeeds on its one connection; every slow connection ends
    with a 408 or a bare close, at the read deadline (not before it, and
    not long after)."""
    d = tlmd_factory(args=["--http-read-timeout-ms", str(READ_MS),
                           "--http-max-per-peer", "1000"])
    flood = SlowHeaders(d.http_port)
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=15)
    socks, pairs, failures = set(), 0, []
    t0 = time.monotonic()
    flood.start()
    try:
        wait_until(lambda: len(flood.open) + len(flood.failed_connects) >= SLOW_N,
                   10, what="the slow connections")
        deadline = time.monotonic() + 30
        while pairs < 200 or flood.ended_count() < SLOW_N:
            assert time.monotonic() < deadline, \
                f"{pairs} pairs and {flood.ended_count()} slow ones ended in 30 s"
            try:
                body = json.dumps({"options": {"ttl": 600000},
                                   "meta": {"i": pairs}})
                conn.request("POST", "/v1/leases", body,
                             {"Content-Type": "application/json"})
                socks.add(conn.sock.getsockname()[1])
                r = conn.getresponse()
                created = HttpResponse(r.status, {}, r.read())
                if created.status != 201:
                    failures.append(("create", pairs, created))
                    continue
                lease = created.json["lease"]
                assert lease["meta"] == {"i": pairs}
                conn.request("GET", f"/v1/leases/{lease['id']}")
                socks.add(conn.sock.getsockname()[1])
                r = conn.getresponse()
                got = HttpResponse(r.status, {}, r.read())
                if got.status != 200 or got.json["lease"] != lease:
                    failures.append(("get", pairs, got))
            except (OSError, http.client.HTTPException) as e:
                failures.append(("exception", pairs, repr(e)))
                conn.close()
            pairs += 1
        flood.stop_reopening()
        left = len(flood.open)
        # The ones still open end by their read deadline too.
        assert wait_until(lambda: not flood.open, READ_MS / 1000 + 3, interval=0.05,
                          what=f"the last {len(flood.open)} slow connections to end")
        elapsed = time.monotonic() - t0
    finally:
        flood.quit()
        conn.close()
    lifetimes = [lt for lt, _ in flood.ended]
    replies = [rep for _, rep in flood.ended]
    n408 = sum(rep.startswith(b"HTTP/1.1 408") for rep in replies)
    with capsys.disabled():
        print(f"\n[http slowloris] {elapsed:.1f} s: {pairs} create+get pairs, "
              f"{len(flood.ended)} slow connections ended ({n408} with 408, "
              f"{left} after the client stopped), lifetimes "
              f"{min(lifetimes):.2f}..{max(lifetimes):.2f} s")
    assert not failures, failures[:5]
    assert len(socks) == 1, f"the keep-alive client needed {len(socks)} connections"
    assert not flood.failed_connects, flood.failed_connects[:5]
    for rep in replies:
        if rep:
            assert rep.startswith(b"HTTP/1.1 408"), rep[:300]
            assert_failure(json.loads(rep.partition(b"\r\n\r\n")[2]), "invalid_request")
    assert min(lifetimes) >= READ_MS / 1000 - 0.2, \
        f"a slow connection was closed after {min(lifetimes):.2f} s"
    assert max(lifetimes) < READ_MS / 1000 + 1.5, \
        f"a slow connection lived {max(lifetimes):.2f} s"
    assert d.alive(), d.status()
    assert d.http("GET", "/healthz").status == 200


# ================================================= HTTP pipelining

class _KeepOpen:
    """A file http.client may `close()` without closing it: the buffered
    reader is shared by the responses read one after another."""

    def __init__(self, f):
        self._f = f

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._f, name)


class PipelinedHttp:
    """One keep-alive connection: raw requests written at once, responses
    parsed in order (http.client's parser over one shared buffer)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.fp = _KeepOpen(self.sock.makefile("rb"))

    def makefile(self, *args, **kw):  # for http.client.HTTPResponse
        return self.fp

    def send(self, data: bytes):
        self.sock.sendall(data)

    def response(self, method):
        r = http.client.HTTPResponse(self, method=method)
        r.begin()
        resp = HttpResponse(r.status, {k.lower(): v for k, v in r.getheaders()},
                            r.read())
        resp.will_close = r.will_close
        return resp

    def close(self):
        self.sock.close()


def raw_request(method, path, body=None):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body).encode()
    return (head + "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def test_bodyless_post_pipelined_is_answered_at_once_in_order(tlmd):
    """POST /v1/leases with neither Content-Length nor chunks is an empty
    body, `{}`: a create with defaults (201), answered at once although
    more requests follow it in the same write, a body-less renew and a
    GET; all three answered in order on the one keep-alive connection,
    which stays usable."""
    ref = tlmd.http("POST", "/v1/leases", {})  # the defaults, for comparison
    assert ref.status == 201, ref
    ref = check_lease(ref.json["lease"])
    known = tlmd.http("POST", "/v1/leases", {"renewable": True,
                                             "options": {"ttl": 60000}})
    assert known.status == 201, known
    known = known.json["lease"]
    p = PipelinedHttp(tlmd.http_port, timeout=5)
    try:
        t0 = time.monotonic()
        p.send(raw_request("POST", "/v1/leases")
               + raw_request("POST", f"/v1/leases/{known['id']}/renew")
               + raw_request("GET", f"/v1/leases/{known['id']}"))
        created = p.response("POST")
        renewed = p.response("POST")
        got = p.response("GET")
        assert time.monotonic() - t0 < 5
        assert created.status == 201, created
        lease = check_lease(assert_success(created.json)["lease"])
        assert lease["id"] not in (ref["id"], known["id"])
        for field in ("backend", "ttl", "renewable", "tags", "meta", "description"):
            assert lease[field] == ref[field], (field, lease, ref)
        assert renewed.status == 200, renewed
        assert assert_success(renewed.json)["lease"]["id"] == known["id"]
        assert got.status == 200, got
        assert got.json["lease"]["id"] == known["id"]
        assert got.json["lease"]["expires"] == renewed.json["lease"]["expires"]
        assert not (created.will_close or renewed.will_close or got.will_close)
        p.send(raw_request("GET", f"/v1/leases/{lease['id']}"))
        again = p.response("GET")
        assert again.status == 200 and again.json["lease"] == lease, again
    finally:
        p.close()


def test_http_pipeline_50_requests_in_one_write(tlmd):
    """50 requests, one write, one keep-alive connection: REST creates and
    gets, action-API gets and creates with request ids, gets of a missing
    lease; the 50 answers come back in request order, each with its own
    status and body."""
    known = tlmd.http("POST", "/v1/leases", {"options": {"ttl": 60000}})
    assert known.status == 201, known
    known = check_lease(known.json["lease"])
    missing = "missing0000000000000"
    plan = []  # (method, bytes, check(resp))
    for i in range(50):
        k = i % 5
        if k == 0:
            def check(r, i=i):
                assert r.status == 201, r
                assert check_lease(r.json["lease"])["meta"] == {"i": i}
            plan.append(("POST", raw_request("POST", "/v1/leases",
                                             {"options": {"ttl": 60000},
                                              "meta": {"i": i}}), check))
        elif k == 1:
            def check(r):
                assert r.status == 200, r
                assert r.json["lease"] == known
            plan.append(("GET", raw_request("GET", f"/v1/leases/{known['id']}"), check))
        elif k == 2:
            def check(r, i=i):
                assert r.status == 200, r
                assert assert_success(r.json)["request_id"] == i
                assert r.json["lease"] == known
            plan.append(("POST", raw_request("POST", "/v1/actions",
                                             {"action": "get", "token_id": known["id"],
                                              "request_id": i}), check))
        elif k == 3:
            def check(r):
                assert r.status == 404, r
                assert_failure(r.json, "not_found")
            plan.append(("GET", raw_request("GET", f"/v1/leases/{missing}"), check))
        else:
            def check(r, i=i):
                assert r.status == 200, r
                assert assert_success(r.json)["request_id"] == f"c{i}"
                assert check_lease(r.json["lease"])["meta"] == {"i": i}
            plan.append(("POST", raw_request("POST", "/v1/actions",
                                             {"action": "create", "meta": {"i": i},
                                              "request_id": f"c{i}"}), check))
    p = PipelinedHttp(tlmd.http_port, timeout=10)
    try:
        p.send(b"".join(data for _, data, _ in plan))
        for n, (method, _, check) in enumerate(plan):
            r = p.response(method)
            try:
                check(r)
            except AssertionError as e:
                raise AssertionError(f"answer {n} of 50: {e}") from e
            assert not r.will_close, f"answer {n} closes the connection"
        # Still the same connection, still served.
        p.send(raw_request("GET", "/healthz"))
        assert p.response("GET").status == 200
    finally:
        p.close()
    assert tlmd.api("tcp").health()["leases"] == 1 + 10 + 10
