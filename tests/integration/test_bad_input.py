"""Bad input: failure replies, connection keeps working, nothing else affected."""

import json
import re
import socket
import struct
import threading
import time

import pytest

from tlmd_harness import (MESSAGE_LIMIT, assert_failure, assert_success,
                          http_raw, http_request)


def _j(obj):
    return json.dumps(obj).encode()


BIG_META = {"blob": "m" * (66 * 1024)}
DEEP = b"[" * 100000 + b"]" * 100000

BAD_CASES = [
    ("truncated_json", b'{"action": "create", ', "invalid_request"),
    ("garbage", b"hello world", "invalid_request"),
    ("trailing_garbage", b'{"action":"health"} trailing', "invalid_request"),
    ("array", b"[1, 2, 3]", "invalid_request"),
    ("string", b'"create"', "invalid_request"),
    ("number", b"42", "invalid_request"),
    ("null", b"null", "invalid_request"),
    ("bool", b"true", "invalid_request"),
    ("empty_object", b"{}", "invalid_request"),
    ("action_not_string", _j({"action": 5}), "invalid_request"),
    ("action_null", _j({"action": None}), "invalid_request"),
    ("unknown_action", _j({"action": "frobnicate"}), "invalid_request"),
    ("ttl_string", _j({"action": "create", "options": {"ttl": "60000"}}), "invalid_request"),
    ("ttl_bool", _j({"action": "create", "options": {"ttl": True}}), "invalid_request"),
    ("ttl_negative", _j({"action": "create", "options": {"ttl": -1}}), "invalid_request"),
    ("ttl_zero", _j({"action": "create", "options": {"ttl": 0}}), "invalid_request"),
    ("ttl_below_min", _j({"action": "create", "options": {"ttl": 999}}), "invalid_request"),
    ("ttl_above_max", _j({"action": "create", "options": {"ttl": 96 * 3600 * 1000 + 1}}),
     "invalid_request"),
    ("ttl_huge_float", b'{"action":"create","options":{"ttl":1e300}}', "invalid_request"),
    ("ttl_huge_int", b'{"action":"create","options":{"ttl":99999999999999999999999}}',
     "invalid_request"),
    ("ttl_int64_min", b'{"action":"create","options":{"ttl":-9223372036854775808}}',
     "invalid_request"),
    ("options_not_object", _j({"action": "create", "options": 60000}), "invalid_request"),
    ("tags_not_array", _j({"action": "create", "tags": "t"}), "invalid_request"),
    ("tags_not_strings", _j({"action": "create", "tags": ["a", 1]}), "invalid_request"),
    ("tags_nested", _j({"action": "create", "tags": [["a"]]}), "invalid_request"),
    ("meta_array", _j({"action": "create", "meta": [1, 2]}), "invalid_request"),
    ("meta_string", _j({"action": "create", "meta": "x"}), "invalid_request"),
    ("renewable_string", _j({"action": "create", "renewable": "yes"}), "invalid_request"),
    ("description_number", _j({"action": "create", "description": 5}), "invalid_request"),
    ("backend_number", _j({"action": "create", "backend": 5}), "invalid_request"),
    ("token_id_number", _j({"action": "get", "token_id": 5}), "invalid_request"),
    ("token_id_object", _j({"action": "revoke", "token_id": {"a": 1}}), "invalid_request"),
    ("list_tag_number", _j({"action": "list", "tag": 5}), "invalid_request"),
    ("list_limit_zero", _j({"action": "list", "limit": 0}), "invalid_request"),
    ("list_limit_negative", _j({"action": "list", "limit": -3}), "invalid_request"),
    ("meta_too_large", _j({"action": "create", "meta": BIG_META}), "invalid_request"),
    ("meta_too_large_many_keys",
     _j({"action": "create", "meta": {f"k{i:05d}": "v" * 20 for i in range(3000)}}),
     "invalid_request"),
    ("meta_900k", _j({"action": "create", "meta": {"blob": "z" * (900 * 1024)}}),
     "invalid_request"),
    ("invalid_utf8", b'{"action":"create","description":"\xff\xfe bad"}', "invalid_request"),
    ("deep_nesting", DEEP, "invalid_request"),
    ("deep_nesting_in_meta", b'{"action":"create","meta":{"a":' + DEEP + b"}}",
     "invalid_request"),
]


@pytest.mark.parametrize("name,payload,code", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input(tlmd, transport, name, payload, code):
    api = tlmd.api(transport)
    before = api.create(ttl=60000, tags=["keep"])
    bystander = tlmd.tcp()  # an unrelated client connected all along
    try:
        resp = api.raw(payload)
        assert_failure(resp, code)
        assert tlmd.alive(), "tlmd died"
        # the same connection keeps working, stored leases are untouched
        assert api.get(before["id"])["lease"] == before
        h = api.health()
        assert h["leases"] == 1, "a bad request must not create anything"
        assert_success(bystander.request({"action": "get", "token_id": before["id"]}))
    finally:
        bystander.close()
        api.close()


def _deep_call(tlmd, transport, conn, payload):
    """Send payload, return (reply with the deep [[..]] run collapsed to a
    marker string, nesting depth of that run).  Python's json module cannot
    decode 30000 levels itself."""
    if transport == "tcp":
        conn.send_raw(payload + b"\n")
        raw = conn.recv_line()
    else:
        r = http_request(tlmd.http_port, "POST", "/v1/actions", payload)
        raw = r.raw
    m = re.search(rb"\[{100,}\]{100,}", raw)
    depth = 0
    if m:
        depth = m.group(0).count(b"[")
        assert m.group(0) == b"[" * depth + b"]" * depth
        raw = raw[:m.start()] + b'"DEEP"' + raw[m.end():]
    return json.loads(raw), depth


def test_deep_meta_under_size_limit(tlmd, transport):
    """~60 KB of nesting inside meta: under the 64 KiB limit, so tlmd may
    store it or refuse it (invalid_request), but must not crash; if stored,
    it reads back intact."""
    api = tlmd.api(transport)
    before = api.create(ttl=60000)
    conn = tlmd.tcp() if transport == "tcp" else None
    depth = 30000
    payload = (b'{"action":"create","options":{"ttl":60000},"meta":{"a":'
               + b"[" * depth + b"]" * depth + b"}}")
    try:
        resp, d = _deep_call(tlmd, transport, conn, payload)
        assert tlmd.alive(), "tlmd died"
        if resp.get("result") == "success":
            assert d == depth and resp["lease"]["meta"] == {"a": "DEEP"}
            get = json.dumps({"action": "get", "token_id": resp["lease"]["id"]}).encode()
            got, d = _deep_call(tlmd, transport, conn, get)
            assert_success(got)
            assert d == depth and got["lease"]["meta"] == {"a": "DEEP"}
        else:
            assert_failure(resp, "invalid_request")
        assert api.get(before["id"])["lease"] == before
        assert tlmd.alive()
    finally:
        if conn:
            conn.close()


def test_bad_input_request_id_echo(api):
    for payload in (
        {"action": "frobnicate", "request_id": "r1"},
        {"action": "create", "options": {"ttl": "x"}, "request_id": "r2"},
        {"action": "create", "tags": 5, "request_id": 17},
        {"action": "create", "meta": BIG_META, "request_id": "r4"},
    ):
        r = assert_failure(api.call(payload), "invalid_request")
        assert r.get("request_id") == payload["request_id"], r


def test_meta_under_limit_is_accepted(api):
    lease = api.create(ttl=60000, meta={"blob": "m" * 60000})
    assert api.get(lease["id"])["lease"]["meta"] == {"blob": "m" * 60000}


def test_http_empty_body(tlmd):
    r = tlmd.http("POST", "/v1/actions", b"", {"Content-Type": "application/json"})
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")


# ------------------------------------------------------------ too_large (TCP)

def _oversized_line(size=MESSAGE_LIMIT + 4096):
    head = b'{"action":"create","request_id":"big","description":"'
    tail = b'"}'
    return head + b"d" * (size - len(head) - len(tail)) + tail


def _send_bg(sock, data):
    def run():
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may close the connection before we are done
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _read_reply_then_close(client, timeout=15):
    """Returns (first reply line or None, closed?)."""
    line = None
    try:
        line = client.recv_line(timeout)
    except (ConnectionResetError, BrokenPipeError):
        return None, True
    except Exception:
        return None, client.eof
    closed = client.wait_closed(timeout)
    return line, closed


@pytest.mark.parametrize("newline", [True, False], ids=["line", "no_newline"])
def test_tcp_too_large_closes_connection(tlmd, newline):
    api = tlmd.api("tcp")
    before = api.create(ttl=60000)
    bystander = tlmd.tcp()
    victim = tlmd.tcp()
    try:
        data = _oversized_line()
        if newline:
            data += b"\n"
        t = _send_bg(victim.sock, data)
        line, closed = _read_reply_then_close(victim)
        t.join(10)
        assert line is not None, "no reply to an oversized message"
        resp = json.loads(line)
        assert_failure(resp, "too_large")
        assert closed, "server must close the connection after too_large"
        assert tlmd.alive()
        assert api.get(before["id"])["lease"] == before
        assert_success(bystander.request({"action": "get", "token_id": before["id"]}))
        assert api.health()["leases"] == 1
        # new connections work fine
        with tlmd.tcp() as c:
            assert_success(c.request({"action": "health"}))
    finally:
        victim.close()
        bystander.close()
        api.close()


def test_tcp_too_large_after_pipelined_good_requests(tlmd):
    """Replies to requests before the oversized one still arrive in order."""
    with tlmd.tcp() as c:
        data = (b'{"action":"health","request_id":1}\n'
                b'{"action":"create","request_id":2}\n' + _oversized_line() + b"\n")
        t = _send_bg(c.sock, data)
        r1 = c.recv()
        r2 = c.recv()
        assert r1["request_id"] == 1 and assert_success(r1)
        assert r2["request_id"] == 2 and assert_success(r2)
        line, closed = _read_reply_then_close(c)
        t.join(10)
        assert line is not None
        assert_failure(json.loads(line), "too_large")
        assert closed
    assert tlmd.alive()
    assert tlmd.api("tcp").get(r2["lease"]["id"])["result"] == "success"


def test_tcp_just_under_limit_is_processed(tlmd):
    """A ~1000 KiB message is not too_large (its meta is too big, though)."""
    with tlmd.tcp() as c:
        msg = _j({"action": "create", "request_id": "u",
                  "meta": {"b": "q" * (1000 * 1024)}})
        assert len(msg) < MESSAGE_LIMIT
        c.send_raw(msg + b"\n")
        r = c.recv()
        assert_failure(r, "invalid_request")
        assert r.get("request_id") == "u"
        assert_success(c.request({"action": "health"}))


# ----------------------------------------------------------- too_large (HTTP)

@pytest.mark.parametrize("path", ["/v1/actions", "/v1/leases"])
def test_http_too_large(tlmd, path):
    api = tlmd.api("http")
    before = api.create(ttl=60000)
    body = _oversized_line(MESSAGE_LIMIT + 64 * 1024)
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
           f"Connection: close\r\n\r\n").encode() + body
    status, raw, resp = http_raw(tlmd.http_port, req)
    assert status == 413, raw[:500]
    if resp is not None and resp.json is not None:
        assert_failure(resp.json, "too_large")
    assert tlmd.alive()
    assert api.get(before["id"])["lease"] == before
    assert api.health()["leases"] == 1


# ----------------------------------------------------- hostile connections

def test_http_garbage_request_does_not_crash(tlmd):
    api = tlmd.api("tcp")
    before = api.create(ttl=60000)
    for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\x03" * 100,
                 b"POST /v1/actions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /v1/actions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"act"):
        s = socket.create_connection(("127.0.0.1", tlmd.http_port), timeout=5)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
        finally:
            s.close()
    assert tlmd.alive()
    assert api.get(before["id"])["lease"] == before
    r = tlmd.http("GET", "/healthz")
    assert r.status == 200


def test_tcp_abrupt_disconnects_do_not_crash(tlmd):
    api = tlmd.api("tcp")
    before = api.create(ttl=60000)
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", tlmd.tcp_port), timeout=5)
        if i % 3 == 0:
            s.sendall(b'{"action":"crea')  # half a request
        elif i % 3 == 1:
            s.sendall(b'{"action":"health"}\n' * 50)  # replies never read
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    time.sleep(0.1)
    assert tlmd.alive()
    assert api.get(before["id"])["lease"] == before
    assert api.health()["leases"] == 1
