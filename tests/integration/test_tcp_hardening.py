"""TCP against idle, unauthenticated and non-reading clients: idle and auth
deadlines, the longest-idle connection evicted at the connection limit, a
normal client's latency while 2,000 idle connections are open, pre-auth
lines refused before they are parsed, and replies a client does not read
bounded in memory. Loopback only; each test takes a few seconds."""

import json
import resource
import socket
import threading
import time

import pytest

from tlmd_harness import (TcpClient, assert_failure, assert_success,
                          write_key_file)

KEY = "k1-0123456789abcdef0123456789abcdef"
MIB = 1024 * 1024


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _peak_rss(d):
    """Bytes: the daemon's peak resident set so far (VmHWM)."""
    return _status_kib(d.proc.pid, "VmHWM") * 1024


def _raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        if want < n:
            pytest.skip(f"needs {n} file descriptors, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _open_idle(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def _p99(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


@pytest.fixture
def keyfile(tmp_path):
    return write_key_file(tmp_path / "keys.txt", [KEY])


# ------------------------------------------------------------- deadlines

def test_idle_connection_closed_after_idle_timeout(tlmd_factory):
    d = tlmd_factory(args=["--tcp-idle-timeout-ms", "800"])
    idle = d.tcp()
    busy = d.tcp()
    try:
        assert_success(idle.request({"action": "health"}))
        t0 = time.monotonic()
        # A client that sends now and then stays connected meanwhile.
        for _ in range(8):
            assert_success(busy.request({"action": "health"}))
            time.sleep(0.3)
        assert idle.wait_closed(timeout=5), "idle connection not closed"
        assert time.monotonic() - t0 >= 0.7, "closed before the idle timeout"
        assert_success(busy.request({"action": "health"}))
    finally:
        idle.close()
        busy.close()


def test_unauthenticated_connection_closed_after_auth_deadline(tlmd_factory,
                                                               keyfile):
    d = tlmd_factory(api_key_file=keyfile,
                     args=["--tcp-auth-timeout-ms", "500"])
    silent = d.tcp()
    refused = d.tcp()
    authed = d.tcp(api_key=KEY)
    try:
        # Failed attempts do not extend the deadline.
        assert_failure(refused.request({"action": "health"}), "unauthorized")
        t0 = time.monotonic()
        notice = silent.recv(timeout=5)
        assert_failure(notice, "unauthorized")
        assert silent.wait_closed(timeout=3), "unauthenticated stays open"
        assert refused.wait_closed(timeout=3), "refused client stays open"
        assert time.monotonic() - t0 < 3
        # An authenticated connection is not bound by the auth deadline.
        time.sleep(0.3)
        assert_success(authed.request({"action": "health"}))
    finally:
        silent.close()
        refused.close()
        authed.close()


# -------------------------------------------------------------- eviction

@pytest.mark.parametrize("with_keys", [False, True], ids=["open", "keys"])
def test_new_client_served_when_idle_connections_fill_the_limit(
        tlmd_factory, keyfile, with_keys):
    limit = 32
    d = tlmd_factory(api_key_file=keyfile if with_keys else None,
                     args=["--tcp-max-connections", str(limit)])
    first = TcpClient(d.tcp_port)
    time.sleep(0.05)
    idle = _open_idle(d.tcp_port, limit + 8)
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        with TcpClient(d.tcp_port, timeout=5) as c:
            if with_keys:
                assert_success(c.request({"action": "auth", "api_key": KEY}))
            assert_success(c.request({"action": "health"}, timeout=5))
        elapsed = time.monotonic() - t0
        assert elapsed < 2, f"new client waited {elapsed:.2f} s"
        # The longest-idle connection made room, told why.
        assert_failure(first.recv(timeout=5), "overloaded")
        assert first.wait_closed(timeout=5)
    finally:
        first.close()
        _close_all(idle)


def test_normal_client_latency_during_2000_idle_connections(tlmd_factory,
                                                            capsys):
    """Default --tcp-max-connections (1024): the idle ones beyond it evict
    older idle ones, while a client that keeps working (and reconnects now
    and then) keeps its latency."""
    idle_n = 2000
    _raise_fd_limit(idle_n + 512)
    d = tlmd_factory()
    lease = assert_success(d.tcp().request({"action": "create"}))["lease"]
    samples = {"before": [], "during": []}
    phase = ["before"]
    stop = threading.Event()
    errors = []

    def normal_client():
        client = TcpClient(d.tcp_port, timeout=5)
        i = 0
        try:
            while not stop.is_set():
                t = time.monotonic()
                if i % 25 == 24:  # a fresh connection now and then
                    with TcpClient(d.tcp_port, timeout=5) as fresh:
                        assert_success(fresh.request({"action": "health"}))
                else:
                    assert_success(client.request(
                        {"action": "get", "token_id": lease["id"]}))
                samples[phase[0]].append(time.monotonic() - t)
                i += 1
                time.sleep(0.002)
        except Exception as e:  # reported below
            errors.append(repr(e))
        finally:
            client.close()

    worker = threading.Thread(target=normal_client, daemon=True)
    worker.start()
    idle = []
    try:
        time.sleep(1.5)
        phase[0] = "during"
        idle = _open_idle(d.tcp_port, idle_n)
        time.sleep(1.5)
        stop.set()
        worker.join(10)
        assert not errors, errors
        before, during = samples["before"], samples["during"]
        assert len(before) > 100 and len(during) > 100, (len(before),
                                                         len(during))
        p99_before, p99_during = _p99(before), _p99(during)
        with capsys.disabled():
            print(f"\n[tcp] p99 before {p99_before * 1000:.2f} ms, while "
                  f"opening and holding {idle_n} idle connections "
                  f"{p99_during * 1000:.2f} ms (max {max(during) * 1000:.2f} "
                  f"ms, {len(before)}/{len(during)} requests)")
        assert p99_during < 1.0, f"p99 {p99_during:.3f} s during the idle flood"
    finally:
        stop.set()
        _close_all(idle)


# ------------------------------------------------------------ memory

def test_big_pre_auth_lines_refused_without_parsing(tlmd_factory, keyfile):
    d = tlmd_factory(api_key_file=keyfile)
    # A MiB of tiny values: the document would cost many times the text.
    line = (b'{"action":"create","meta":{"x":['
            + b"0," * (MIB // 2 - 64) + b'0]}}\n')
    assert len(line) < MIB
    peak0 = _peak_rss(d)
    conns = [TcpClient(d.tcp_port) for _ in range(32)]
    try:
        senders = [threading.Thread(target=_send_quietly, args=(c, line),
                                    daemon=True) for c in conns]
        for t in senders:
            t.start()
        for t in senders:
            t.join(20)
        replies = [c.recv(timeout=10) for c in conns]
        growth = _peak_rss(d) - peak0
        print(f"peak RSS growth {growth / MIB:.1f} MiB")
        assert growth < 48 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB"
        for c, r in zip(conns, replies):
            assert_failure(r, "too_large")
            assert c.wait_closed(timeout=5), "pre-auth too_large must close"
        # A small auth still works, and so does what follows it.
        with d.tcp(api_key=KEY) as c:
            assert_success(c.request({"action": "health"}))
    finally:
        for c in conns:
            c.close()


def test_small_pre_auth_line_refused_with_its_request_id(tlmd_factory,
                                                         keyfile):
    d = tlmd_factory(api_key_file=keyfile)
    with d.tcp() as c:
        r = assert_failure(c.request({"action": "list", "request_id": "r1",
                                      "limit": [1, 2, {"x": 3}]}),
                           "unauthorized")
        assert r["request_id"] == "r1"
        c.send_raw(b"not json\n")
        assert_failure(c.recv(), "unauthorized")
        assert_success(c.request({"action": "auth", "api_key": KEY}))
        assert_success(c.request({"action": "health"}))


def _send_quietly(client, data):
    try:
        client.send_raw(data)
    except OSError:
        pass  # the server closed first


def _unread_gets(d, pad, connections=6, gets_each=3000):
    """Makes 8 leases of about 60 KB, then opens `connections` clients that
    pipeline `gets_each` gets of them and never read; returns the lease
    ids, the peak RSS before the attack and the attacking sockets."""
    ids = []
    with d.tcp() as c:
        for _ in range(8):
            lease = assert_success(c.request(
                {"action": "create", "meta": {"pad": pad * 60_000}}))["lease"]
            ids.append(lease["id"])
    peak0 = _peak_rss(d)
    gets = b"".join(json.dumps({"action": "get", "token_id": ids[i % 8]})
                    .encode() + b"\n" for i in range(gets_each))
    attackers = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        attackers.append(s)
        threading.Thread(target=_sendall_quietly, args=(s, gets),
                         daemon=True).start()
    return ids, peak0, attackers


def test_unread_replies_bounded(tlmd_factory):
    """Clients pipelining gets of 60 KB leases and never reading: the
    replies held wait within the per-connection budget (8 MiB)."""
    d = tlmd_factory()
    ids, peak0, attackers = _unread_gets(d, "x")
    try:
        time.sleep(3)
        growth = _peak_rss(d) - peak0
        print(f"peak RSS growth {growth / MIB:.1f} MiB")
        assert growth < 120 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB"
        # Others are still served meanwhile.
        with TcpClient(d.tcp_port, timeout=5) as c:
            assert_success(c.request({"action": "get", "token_id": ids[0]}))
    finally:
        _close_all(attackers)


def test_unread_replies_bounded_in_total(tlmd_factory):
    """With a 16 MiB total budget, six non-reading clients hold at most
    about that much, and a client that reads its replies is still served."""
    d = tlmd_factory(args=["--tcp-reply-buffer-total-bytes", str(16 * MIB)])
    ids, peak0, attackers = _unread_gets(d, "y")
    try:
        time.sleep(3)
        growth = _peak_rss(d) - peak0
        print(f"peak RSS growth {growth / MIB:.1f} MiB")
        assert growth < 48 * MIB, f"peak RSS grew {growth / MIB:.0f} MiB"
        with TcpClient(d.tcp_port, timeout=5) as c:
            t0 = time.monotonic()
            for i in range(20):
                assert_success(c.request({"action": "get",
                                          "token_id": ids[i % 8]}))
            assert time.monotonic() - t0 < 2
    finally:
        _close_all(attackers)


def _sendall_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass
