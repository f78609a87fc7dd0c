"""API-key authentication over TCP and HTTP."""

import pytest

from tlmd_harness import (HTTP_STATUS, assert_failure, assert_success,
                          write_key_file)

KEY1 = "k1-0123456789abcdef0123456789abcdef"
KEY2 = "k2-fedcba9876543210fedcba9876543210"


@pytest.fixture
def authd(tlmd_factory, tmp_path):
    keyfile = write_key_file(tmp_path / "keys.txt", [KEY1, KEY2])
    return tlmd_factory(api_key_file=keyfile)


# ----------------------------------------------------------------------- TCP

def test_tcp_requires_auth_first(authd):
    with authd.tcp() as c:
        for req in ({"action": "health", "request_id": 1},
                    {"action": "create", "request_id": 2},
                    {"action": "list", "request_id": 3},
                    {"action": "get", "token_id": "x" * 20, "request_id": 4}):
            r = assert_failure(c.request(req), "unauthorized")
            assert r.get("request_id") == req["request_id"]
        # still open: a correct auth now works
        assert_success(c.request({"action": "auth", "api_key": KEY1}))
        lease = assert_success(c.request({"action": "create"}))["lease"]
        assert_success(c.request({"action": "get", "token_id": lease["id"]}))


def test_tcp_failed_auth_keeps_connection_open(authd):
    with authd.tcp() as c:
        r = assert_failure(c.request({"action": "auth", "api_key": "wrong",
                                      "request_id": "a1"}), "unauthorized")
        assert r["request_id"] == "a1"
        assert_failure(c.request({"action": "auth", "api_key": ""}), "unauthorized")
        # unauthenticated after the failures
        assert_failure(c.request({"action": "health"}), "unauthorized")
        assert_success(c.request({"action": "auth", "api_key": KEY2}))
        assert_success(c.request({"action": "health"}))


def test_tcp_missing_api_key_field(authd):
    with authd.tcp() as c:
        r = c.request({"action": "auth"})
        assert r.get("result") == "failure"
        assert r.get("error") in ("unauthorized", "invalid_request"), r
        assert_failure(c.request({"action": "health"}), "unauthorized")


def test_tcp_auth_is_per_connection(authd):
    c1 = authd.tcp(api_key=KEY1)
    c2 = authd.tcp()
    try:
        lease = assert_success(c1.request({"action": "create"}))["lease"]
        assert_failure(c2.request({"action": "get", "token_id": lease["id"]}), "unauthorized")
        assert_success(c1.request({"action": "get", "token_id": lease["id"]}))
    finally:
        c1.close()
        c2.close()


def test_tcp_pipelined_auth(authd):
    with authd.tcp() as c:
        c.send_many([{"action": "health", "request_id": 0},
                     {"action": "auth", "api_key": KEY1, "request_id": 1},
                     {"action": "health", "request_id": 2}])
        r = c.recv_many(3)
        assert_failure(r[0], "unauthorized")
        assert_success(r[1])
        assert_success(r[2])
        assert [x["request_id"] for x in r] == [0, 1, 2]


# ---------------------------------------------------------------------- HTTP

def _post(d, body, headers=None):
    return d.http("POST", "/v1/actions", body, headers)


def test_http_missing_header(authd):
    r = _post(authd, {"action": "health", "request_id": "h"})
    assert r.status == 401, r
    assert_failure(r.json, "unauthorized")
    r = authd.http("POST", "/v1/leases", {"options": {"ttl": 60000}})
    assert r.status == 401, r
    assert_failure(r.json, "unauthorized")
    r = authd.http("GET", "/v1/leases")
    assert r.status == 401, r


@pytest.mark.parametrize("header", [
    "Bearer wrong",
    f"Bearer {KEY1}x",
    f"Bearer {KEY1[:-1]}",
    f"Basic {KEY1}",
    KEY1,
    "Bearer ",
])
def test_http_wrong_key(authd, header):
    r = _post(authd, {"action": "create"}, {"Authorization": header})
    assert r.status == 401, r
    assert_failure(r.json, "unauthorized")
    # nothing was created
    ok = _post(authd, {"action": "health"}, {"Authorization": f"Bearer {KEY1}"})
    assert ok.status == 200 and ok.json["leases"] == 0


@pytest.mark.parametrize("key", [KEY1, KEY2])
def test_http_good_key(authd, key):
    h = {"Authorization": f"Bearer {key}"}
    r = _post(authd, {"action": "create", "request_id": 5}, h)
    assert r.status == 200, r
    lease = assert_success(r.json)["lease"]
    assert r.json["request_id"] == 5
    r = authd.http("GET", f"/v1/leases/{lease['id']}", headers=h)
    assert r.status == 200 and r.json["lease"] == lease
    r = authd.http("POST", "/v1/leases", {"options": {"ttl": 60000}}, h)
    assert r.status == 201, r


def test_http_auth_action(authd):
    h = {"Authorization": f"Bearer {KEY1}"}
    r = _post(authd, {"action": "auth", "api_key": KEY2}, h)
    assert r.status == 200 and assert_success(r.json)
    r = _post(authd, {"action": "auth", "api_key": "wrong"}, h)
    assert r.status == HTTP_STATUS["unauthorized"], r
    assert_failure(r.json, "unauthorized")


def test_keys_do_not_leak_between_protocols(authd):
    """A TCP auth does not authorize anonymous HTTP requests."""
    c = authd.tcp(api_key=KEY1)
    try:
        r = _post(authd, {"action": "health"})
        assert r.status == 401
    finally:
        c.close()


def test_nonloopback_bind_allowed_with_keys(tlmd_factory, tmp_path):
    keyfile = write_key_file(tmp_path / "keys.txt", [KEY1])
    d = tlmd_factory(bind="0.0.0.0", api_key_file=keyfile)
    with d.tcp(api_key=KEY1) as c:
        assert_success(c.request({"action": "health"}))
    r = d.http("POST", "/v1/actions", {"action": "health"},
               {"Authorization": f"Bearer {KEY1}"})
    assert r.status == 200
