"""Checks the InfluxDB 2.x fake against influxdb-notes.md and the contract.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/fakes
"""

import base64
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from influxdb2_fake import FakeInfluxDB2, OSS_RESOURCE_TYPES  # noqa: E402

ADMIN = "admin-token-for-tests"
ORG = "tlm-org"
HEX16 = re.compile(r"[0-9a-f]{16}\Z")
UNAUTHORIZED = {"code": "unauthorized", "message": "unauthorized access"}


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = json.loads(raw) if raw else None

    def __repr__(self):
        return f"Resp({self.status}, {self.raw[:200]!r})"


def call(port, method, path, body=None, token=ADMIN, scheme="Token",
         timeout=5.0, conn=None, headers=None):
    """One request; a given conn is reused (keep-alive)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"{scheme} {token}"
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, r, raw)
    finally:
        if own:
            conn.close()


@pytest.fixture
def fake():
    f = FakeInfluxDB2(ADMIN, ORG)
    f.start()
    yield f
    f.stop()


def perms(org_id=None, action="read", rtype="buckets"):
    res = {"type": rtype}
    if org_id:
        res["orgID"] = org_id
    return [{"action": action, "resource": res}]


def create(fake, description="tlm:lease-1", **extra):
    body = {"orgID": fake.org_id, "description": description,
            "permissions": perms(fake.org_id)}
    body.update(extra)
    r = call(fake.port, "POST", "/api/v2/authorizations", body)
    assert r.status == 201, r
    return r.json


def assert_error(r, status, code, message=None):
    assert r.status == status, r
    assert r.headers.getheader("Content-Type").startswith("application/json")
    assert set(r.json) == {"code", "message"}, r.json
    assert r.json["code"] == code, r.json
    assert isinstance(r.json["message"], str) and r.json["message"]
    if message is not None:
        assert r.json["message"] == message


# ---------------------------------------------------------------------------
# system endpoints, orgs, auth
# ---------------------------------------------------------------------------

def test_ping_and_health_need_no_auth(fake):
    r = call(fake.port, "GET", "/ping", token=None)
    assert r.status == 204 and r.raw == b""
    assert r.headers.getheader("Content-Length") == "0"
    assert r.headers.getheader("X-Influxdb-Build") == "OSS"
    r = call(fake.port, "HEAD", "/ping", token=None)
    assert r.status == 204
    r = call(fake.port, "GET", "/health", token=None)
    assert r.status == 200
    assert r.json["name"] == "influxdb" and r.json["status"] == "pass"


def test_org_lookup(fake):
    assert HEX16.match(fake.org_id) and HEX16.match(fake.user_id)
    r = call(fake.port, "GET", f"/api/v2/orgs?org={ORG}")
    assert r.status == 200
    assert [(o["id"], o["name"]) for o in r.json["orgs"]] \
        == [(fake.org_id, ORG)]
    r = call(fake.port, "GET", "/api/v2/orgs?org=nope")
    assert_error(r, 404, "not found", 'organization name "nope" not found')
    other = call(fake.port, "POST", "/api/v2/orgs", {"name": "second"})
    assert other.status == 201 and HEX16.match(other.json["id"])
    again = call(fake.port, "POST", "/api/v2/orgs", {"name": "second"})
    assert_error(again, 422, "conflict")
    r = call(fake.port, "GET", "/api/v2/orgs")
    assert {o["name"] for o in r.json["orgs"]} == {ORG, "second"}
    r = call(fake.port, "GET", f"/api/v2/orgs?orgID={other.json['id']}")
    assert [o["name"] for o in r.json["orgs"]] == ["second"]
    assert_error(call(fake.port, "GET", f"/api/v2/orgs?org={ORG}",
                      token=None), 401, "unauthorized", "unauthorized access")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Token wrong"},
    {"Authorization": f"Basic {ADMIN}"},
    {"Authorization": f"token {ADMIN}"},
    {"Authorization": "Token "},
    {"Authorization": ADMIN},
])
def test_admin_token_enforced(fake, headers):
    for method, path, body in [
            ("GET", "/api/v2/authorizations", None),
            ("POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()}),
            ("GET", f"/api/v2/authorizations/{'a' * 16}", None),
            ("DELETE", f"/api/v2/authorizations/{'a' * 16}", None),
            ("GET", f"/api/v2/orgs?org={ORG}", None)]:
        r = call(fake.port, method, path, body, token=None, headers=headers)
        assert r.status == 401, (method, path, r)
        assert r.json == UNAUTHORIZED
    assert fake.authorizations() == []


def test_bearer_is_accepted(fake):
    r = call(fake.port, "GET", "/api/v2/authorizations", scheme="Bearer")
    assert r.status == 200


# ---------------------------------------------------------------------------
# authorizations
# ---------------------------------------------------------------------------

def test_create_answer_shape(fake):
    a = create(fake)
    assert HEX16.match(a["id"])
    token = a["token"]
    assert len(token) == 88 and token.endswith("==")
    assert len(base64.urlsafe_b64decode(token)) == 64
    assert a["status"] == "active"
    assert a["description"] == "tlm:lease-1"
    assert a["orgID"] == fake.org_id and a["org"] == ORG
    assert a["userID"] == fake.user_id and a["user"] == "admin"
    assert a["permissions"][0]["action"] == "read"
    assert a["permissions"][0]["resource"]["type"] == "buckets"
    assert a["permissions"][0]["resource"]["orgID"] == fake.org_id
    assert a["links"]["self"] == f"/api/v2/authorizations/{a['id']}"
    assert a["links"]["user"] == f"/api/v2/users/{fake.user_id}"
    for key in ("createdAt", "updatedAt"):
        assert a[key].endswith("Z")
        datetime.fromisoformat(a[key][:-1] + "+00:00")
    got = call(fake.port, "GET", f"/api/v2/authorizations/{a['id']}")
    assert got.status == 200 and got.json == a
    b = create(fake, description="other", status="inactive",
               userID=fake.user_id)
    assert b["status"] == "inactive" and b["id"] != a["id"]
    assert b["token"] != a["token"]


def test_all_oss_resource_types_accepted(fake):
    assert len(OSS_RESOURCE_TYPES) == 23
    ps = [{"action": act, "resource": {"type": t}}
          for t in OSS_RESOURCE_TYPES for act in ("read", "write")]
    r = call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": ps})
    assert r.status == 201 and len(r.json["permissions"]) == 46
    assert r.json["description"] == ""


def _bad_bodies(org_id):
    good_perm = {"action": "read", "resource": {"type": "buckets"}}
    return [
        ({"permissions": [good_perm]}, "org id required"),
        ({"orgID": "0123456789abcdef", "permissions": [good_perm]},
         "failed to decode request body: organization not found"),
        ({"orgID": "short", "permissions": [good_perm]}, None),
        ({"orgID": org_id}, "authorization must include permissions"),
        ({"orgID": org_id, "permissions": []},
         "authorization must include permissions"),
        ({"orgID": org_id, "permissions": {"action": "read"}}, None),
        ({"orgID": org_id, "permissions": [
            {"action": "delete", "resource": {"type": "buckets"}}]},
         "unknown action for permission"),
        ({"orgID": org_id, "permissions": [
            {"action": "read", "resource": {"type": "bucket"}}]},
         "unknown resource type for permission"),
        ({"orgID": org_id, "permissions": [
            {"action": "read", "resource": {"type": "flows"}}]},
         "unknown resource type for permission"),
        ({"orgID": org_id, "permissions": [{"action": "read"}]},
         "unknown resource type for permission"),
        ({"orgID": org_id, "permissions": [
            {"action": "read", "resource": {"type": "buckets", "id": "x"}}]},
         None),
        ({"orgID": org_id, "permissions": [good_perm], "status": "revoked"},
         "invalid status"),
        ({"orgID": org_id, "permissions": [good_perm], "description": 5},
         None),
        ([good_perm], None),
        ("{not json", None),
        ("", None),
    ]


def test_create_validation(fake):
    for body, message in _bad_bodies(fake.org_id):
        raw = body if isinstance(body, str) else json.dumps(body)
        r = call(fake.port, "POST", "/api/v2/authorizations", raw)
        assert_error(r, 400, "invalid", message)
    assert fake.authorizations() == []
    r = call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "userID": "0123456789abcdef",
              "permissions": perms()})
    assert_error(r, 404, "not found", "user not found")


def test_get_malformed_and_unknown_ids(fake):
    for method in ("GET", "DELETE"):
        for bad in ("abc", "0123456789abcdef0", "%20"):
            r = call(fake.port, method, f"/api/v2/authorizations/{bad}")
            assert_error(r, 400, "invalid",
                         "id must have a length of 16 bytes")
        r = call(fake.port, method, "/api/v2/authorizations/zzzzzzzzzzzzzzzz")
        assert_error(r, 400, "invalid", "invalid ID")
        r = call(fake.port, method, "/api/v2/authorizations/0123456789abcdef")
        assert_error(r, 404, "not found", "authorization not found")
    r = call(fake.port, "PATCH", "/api/v2/authorizations/0123456789abcdef",
             {"status": "inactive"})
    assert_error(r, 404, "not found", "authorization not found")


def test_list_and_filters(fake):
    second = call(fake.port, "POST", "/api/v2/orgs", {"name": "b"}).json["id"]
    a1 = create(fake, "one")
    a2 = create(fake, "two")
    b1 = call(fake.port, "POST", "/api/v2/authorizations",
              {"orgID": second, "permissions": perms()}).json
    r = call(fake.port, "GET", "/api/v2/authorizations")
    assert r.status == 200
    assert r.json["links"]["self"] == "/api/v2/authorizations"
    assert [a["id"] for a in r.json["authorizations"]] \
        == [a1["id"], a2["id"], b1["id"]]
    assert r.json["authorizations"][0]["token"] == a1["token"]

    def ids(query):
        r = call(fake.port, "GET", f"/api/v2/authorizations?{query}")
        assert r.status == 200, r
        return [a["id"] for a in r.json["authorizations"]]

    assert ids(f"orgID={fake.org_id}") == [a1["id"], a2["id"]]
    assert ids("org=b") == [b1["id"]]
    assert ids(f"userID={fake.user_id}") == [a1["id"], a2["id"], b1["id"]]
    assert ids("user=admin&org=b") == [b1["id"]]
    assert ids("orgID=0123456789abcdef") == []
    assert ids("token=whatever") == [a1["id"], a2["id"], b1["id"]]
    assert_error(call(fake.port, "GET", "/api/v2/authorizations?org=zz"),
                 404, "not found", 'organization name "zz" not found')
    assert_error(call(fake.port, "GET", "/api/v2/authorizations?orgID=12"),
                 400, "invalid")


def test_patch_only_status_and_description(fake):
    a = create(fake)
    path = f"/api/v2/authorizations/{a['id']}"
    r = call(fake.port, "PATCH", path,
             {"status": "inactive", "description": "new",
              "orgID": "0123456789abcdef", "token": "x"})
    assert r.status == 200
    assert r.json["status"] == "inactive" and r.json["description"] == "new"
    assert r.json["orgID"] == a["orgID"] and r.json["token"] == a["token"]
    assert_error(call(fake.port, "PATCH", path, {"status": "gone"}),
                 400, "invalid", "invalid status")
    assert_error(call(fake.port, "PATCH", path, "nope"), 400, "invalid")
    r = call(fake.port, "PATCH", path, {})
    assert r.status == 200 and r.json["status"] == "inactive"


def test_leased_token_works_until_revoked(fake):
    a = create(fake)
    mine = f"/api/v2/authorizations/{a['id']}"
    other = create(fake, "other")
    tok = a["token"]
    r = call(fake.port, "GET", mine, token=tok)
    assert r.status == 200 and r.json["id"] == a["id"]
    assert call(fake.port, "GET", mine, token=tok, scheme="Bearer").status \
        == 200
    # valid but not allowed: 403, never 401
    for method, path, body in [
            ("GET", f"/api/v2/authorizations/{other['id']}", None),
            ("GET", "/api/v2/authorizations", None),
            ("POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()}),
            ("DELETE", mine, None),
            ("GET", f"/api/v2/orgs?org={ORG}", None)]:
        assert_error(call(fake.port, method, path, body, token=tok),
                     403, "forbidden")
    # inactive is a reversible revoke
    call(fake.port, "PATCH", mine, {"status": "inactive"})
    assert call(fake.port, "GET", mine, token=tok).json == UNAUTHORIZED
    call(fake.port, "PATCH", mine, {"status": "active"})
    assert call(fake.port, "GET", mine, token=tok).status == 200
    # delete: 204, then the token is unknown, and a second delete is 404
    r = call(fake.port, "DELETE", mine)
    assert r.status == 204 and r.raw == b""
    assert r.headers.getheader("Content-Length") == "0"
    r = call(fake.port, "GET", mine, token=tok)
    assert r.status == 401 and r.json == UNAUTHORIZED
    assert_error(call(fake.port, "DELETE", mine), 404, "not found",
                 "authorization not found")
    assert_error(call(fake.port, "GET", mine), 404, "not found",
                 "authorization not found")
    st = call(fake.port, "GET", "/_fake/state", token=None).json
    assert st["deleted"] == [a["id"]]
    assert [x["id"] for x in st["authorizations"]] == [other["id"]]


def test_unknown_route_and_wrong_method(fake):
    for path in ("/api/v2/nothing", "/api/v2/authorizations/x/y", "/",
                 "/api/v2/authorizations/"):
        assert_error(call(fake.port, "GET", path), 404, "not found",
                     "path not found")
    r = call(fake.port, "PUT", "/api/v2/authorizations", "{}")
    assert_error(r, 405, "method not allowed")
    assert "POST" in r.headers.getheader("Allow")
    assert_error(call(fake.port, "POST", "/api/v2/authorizations/"
                      "0123456789abcdef", "{}"), 405, "method not allowed")
    assert_error(call(fake.port, "DELETE", "/health"), 405,
                 "method not allowed")


def test_keep_alive_with_content_length(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        a = None
        for i in range(5):
            a = call(fake.port, "POST", "/api/v2/authorizations",
                     {"orgID": fake.org_id, "permissions": perms()},
                     conn=conn).json
            sock = conn.sock
            mine = f"/api/v2/authorizations/{a['id']}"
            for method, path in [("GET", "/ping"), ("GET", mine),
                                 ("GET", "/api/v2/authorizations/abc"),
                                 ("GET", "/no/such/path"),
                                 ("DELETE", mine), ("DELETE", mine)]:
                r = call(fake.port, method, path, conn=conn)
                assert r.headers.getheader("Content-Length") \
                    == str(len(r.raw))
                assert conn.sock is sock   # same connection throughout
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------

def set_fault(fake, **spec):
    r = call(fake.port, "POST", "/_fake/faults", spec, token=None)
    assert r.status == 200, r
    return r.json


def test_fault_refuse_with_count(fake):
    set_fault(fake, mode="refuse", count=1)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        call(fake.port, "GET", "/ping")
    assert call(fake.port, "GET", "/ping").status == 204
    assert call(fake.port, "GET", "/_fake/faults", token=None).json["mode"] \
        == "none"


def test_fault_refuse_on_reused_connection(fake):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        assert call(fake.port, "GET", "/ping", conn=conn).status == 204
        fake.set_fault("refuse")
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            call(fake.port, "GET", "/ping", conn=conn)
        # control endpoints are never affected
        st = call(fake.port, "GET", "/_fake/state", token=None)
        assert st.status == 200 and st.json["fault"]["mode"] == "refuse"
        fake.clear_fault()
    finally:
        conn.close()
    assert call(fake.port, "GET", "/ping").status == 204


def test_fault_refuse_after_processing_loses_only_the_answer(fake):
    set_fault(fake, mode="refuse", count=1, method="POST",
              path="/api/v2/authorizations", process_first=True)
    assert call(fake.port, "GET", "/ping").status == 204   # not matched
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "description": "tlm:lost",
              "permissions": perms()})
    assert [a["description"] for a in fake.authorizations()] == ["tlm:lost"]


def test_fault_hang_times_out_and_does_not_block(fake):
    set_fault(fake, mode="hang")
    t0 = time.monotonic()
    with pytest.raises(socket.timeout):
        call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()}, timeout=0.3)
    assert time.monotonic() - t0 < 2
    # other connections and the control endpoints still answer
    assert call(fake.port, "GET", "/_fake/state", token=None).status == 200
    assert fake.authorizations() == []     # never processed
    # a request hung in a thread ends when the fault is cleared
    errors = []

    def hung():
        try:
            call(fake.port, "GET", "/ping", timeout=5)
        except (OSError, http.client.HTTPException) as e:
            errors.append(e)

    th = threading.Thread(target=hung)
    th.start()
    time.sleep(0.1)
    assert th.is_alive()
    set_fault(fake, mode="none")
    th.join(2)
    assert not th.is_alive() and errors
    assert call(fake.port, "GET", "/ping").status == 204


def test_fault_hang_does_not_block_stop(fake):
    fake.set_fault("hang")
    outcome = []

    def hung():
        try:
            outcome.append(call(fake.port, "GET", "/ping", timeout=5))
        except (OSError, http.client.HTTPException) as e:
            outcome.append(e)

    th = threading.Thread(target=hung)
    th.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 1.5
    th.join(2)
    assert not th.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Exception)


@pytest.mark.parametrize("mode,status,code", [
    ("error500", 500, "internal error"),
    ("error503", 503, "unavailable"),
    ("error429", 429, "too many requests"),
])
def test_fault_errors(fake, mode, status, code):
    set_fault(fake, mode=mode, retry_after=2)
    r = call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()})
    assert_error(r, status, code)
    assert r.headers.getheader("Retry-After") == "2"
    assert fake.authorizations() == []   # not processed
    fake.clear_fault()
    assert call(fake.port, "GET", "/ping").status == 204


def test_fault_count_then_back_to_none(fake):
    a = create(fake)
    fake.set_fault("error503", count=2)
    path = f"/api/v2/authorizations/{a['id']}"
    statuses = [call(fake.port, "GET", path).status for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert fake.fault["mode"] == "none"
    log = [(q["status"], q["fault"]) for q in fake.requests()][-4:]
    assert log == [(503, "error503"), (503, "error503"), (200, None),
                   (200, None)]


def test_fault_slow(fake):
    set_fault(fake, mode="slow", delay_ms=250, count=1)
    t0 = time.monotonic()
    r = call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()})
    assert r.status == 201
    assert time.monotonic() - t0 >= 0.25
    t0 = time.monotonic()
    assert call(fake.port, "GET", "/ping").status == 204
    assert time.monotonic() - t0 < 0.2


def test_fault_slow_request_still_runs_after_client_timeout(fake):
    fake.set_fault("slow", delay_ms=400)
    with pytest.raises(socket.timeout):
        call(fake.port, "POST", "/api/v2/authorizations",
             {"orgID": fake.org_id, "permissions": perms()}, timeout=0.15)
    fake.clear_fault()
    time.sleep(0.4)
    # the answer was never read; the request ran after the delay
    assert len(fake.authorizations()) == 1


def test_bad_fault_specs(fake):
    for spec in ({"mode": "explode"}, {"mode": "slow", "delay_ms": -1},
                 {"mode": "error500", "count": 0},
                 {"mode": "hang", "bogus": 1}, {"mode": "down"}):
        r = call(fake.port, "POST", "/_fake/faults", spec, token=None)
        assert_error(r, 400, "invalid")
    assert_error(call(fake.port, "POST", "/_fake/faults", "{x", token=None),
                 400, "invalid")
    assert_error(call(fake.port, "GET", "/_fake/nothing", token=None),
                 404, "not found")
    with pytest.raises(ValueError):
        fake.set_fault("explode")


def _refused(port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_start_same_port_keeps_state(fake):
    a = create(fake)
    port = fake.port
    fake.stop()
    _refused(port)
    assert fake.start() == port
    r = call(port, "GET", f"/api/v2/authorizations/{a['id']}",
             token=a["token"])
    assert r.status == 200


def test_fault_down_over_http(fake):
    port = fake.port
    set_fault(fake, mode="down", delay_ms=400)
    deadline = time.monotonic() + 1
    while True:   # the listener closes right after the answer
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        except ConnectionResetError:
            pass    # accepted into the backlog just as the listener closed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    deadline = time.monotonic() + 3
    while True:
        try:
            if call(port, "GET", "/ping", timeout=1).status == 204:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert fake.fault["mode"] == "none"


def test_reset(fake):
    create(fake)
    fake.set_fault("error500")
    r = call(fake.port, "POST", "/_fake/reset", token=None)
    assert r.status == 200 and r.json["authorizations"] == []
    assert r.json["fault"]["mode"] == "none"


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def test_cli(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN + "\n")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "influxdb2_fake.py"), "--port", "0",
         "--admin-token-file", str(token_file), "--org", ORG,
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"influxdb2-fake ready port=(\d+) "
                         r"org_id=([0-9a-f]{16})\n", line)
        assert m, line
        assert ready.read_text() == line
        port, org_id = int(m.group(1)), m.group(2)
        r = call(port, "GET", f"/api/v2/orgs?org={ORG}")
        assert r.json["orgs"][0]["id"] == org_id
        assert call(port, "GET", "/api/v2/authorizations",
                    token="nope").status == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_cli_rejects_empty_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    r = subprocess.run(
        [sys.executable, str(HERE / "influxdb2_fake.py"),
         "--admin-token-file", str(token_file), "--org", ORG],
        capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and r.stdout == ""
