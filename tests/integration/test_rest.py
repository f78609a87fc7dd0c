"""REST routes over the same core and HTTP status codes."""

import time
import urllib.parse

import pytest

from tlmd_harness import (assert_failure, assert_success, check_lease, now_ms,
                          parse_ts, without_value)


def _create(d, body=None, status=201):
    r = d.http("POST", "/v1/leases", body if body is not None else {})
    assert r.status == status, r
    return r


def test_post_leases_creates(tlmd):
    r = _create(tlmd, {"options": {"ttl": 60000}, "renewable": True, "tags": ["r"],
                       "meta": {"a": 1}, "description": "rest", "request_id": "rq"})
    body = assert_success(r.json)
    lease = check_lease(body["lease"])
    assert body.get("request_id") == "rq"
    assert lease["ttl"] == 60000 and lease["renewable"] is True
    assert lease["tags"] == ["r"] and lease["meta"] == {"a": 1}
    assert lease["description"] == "rest"
    assert "application/json" in r.headers.get("content-type", "")
    # visible through the action API as well
    got = tlmd.action("tcp", {"action": "get", "token_id": lease["id"]})
    assert got["lease"] == lease


def test_post_leases_empty_body_uses_defaults(tlmd):
    r = _create(tlmd, b"")
    lease = check_lease(assert_success(r.json)["lease"])
    assert lease["backend"] == "local"


@pytest.mark.parametrize("body,code,status", [
    ({"options": {"ttl": 5}}, "invalid_request", 400),
    ({"options": {"ttl": "5000"}}, "invalid_request", 400),
    ({"tags": "x"}, "invalid_request", 400),
    ({"backend": "nope"}, "unknown_backend", 400),
    (b"{not json", "invalid_request", 400),
    (b"[1]", "invalid_request", 400),
])
def test_post_leases_errors(tlmd, body, code, status):
    r = tlmd.http("POST", "/v1/leases", body)
    assert r.status == status, r
    assert_failure(r.json, code)
    assert tlmd.action("tcp", {"action": "health"})["leases"] == 0


def test_get_delete_lease(tlmd):
    lease = _create(tlmd, {"options": {"ttl": 60000}}).json["lease"]
    r = tlmd.http("GET", f"/v1/leases/{lease['id']}")
    assert r.status == 200, r
    assert assert_success(r.json)["lease"] == lease

    r = tlmd.http("DELETE", f"/v1/leases/{lease['id']}")
    assert r.status == 200, r
    assert_success(r.json)

    r = tlmd.http("GET", f"/v1/leases/{lease['id']}")
    assert r.status == 404, r
    assert_failure(r.json, "not_found")
    r = tlmd.http("DELETE", f"/v1/leases/{lease['id']}")
    assert r.status == 404, r
    assert_failure(r.json, "not_found")


def test_get_unknown_lease(tlmd):
    r = tlmd.http("GET", "/v1/leases/doesnotexist0000000000")
    assert r.status == 404, r
    assert_failure(r.json, "not_found")


def test_renew_route(tlmd):
    lease = _create(tlmd, {"options": {"ttl": 60000}, "renewable": True}).json["lease"]
    time.sleep(0.02)
    t0 = now_ms()
    r = tlmd.http("POST", f"/v1/leases/{lease['id']}/renew", {"ttl": 120000})
    t1 = now_ms()
    assert r.status == 200, r
    renewed = check_lease(assert_success(r.json)["lease"])
    assert renewed["ttl"] == 120000
    assert t0 + 120000 - 20 <= parse_ts(renewed["expires"]) <= t1 + 120000 + 20

    # no body -> the lease's ttl
    r = tlmd.http("POST", f"/v1/leases/{lease['id']}/renew")
    assert r.status == 200, r
    assert assert_success(r.json)["lease"]["id"] == lease["id"]
    r = tlmd.http("POST", f"/v1/leases/{lease['id']}/renew", b"")
    assert r.status == 200, r

    r = tlmd.http("POST", f"/v1/leases/{lease['id']}/renew", {"ttl": "x"})
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")


def test_renew_route_errors(tlmd):
    lease = _create(tlmd, {"options": {"ttl": 60000}}).json["lease"]
    r = tlmd.http("POST", f"/v1/leases/{lease['id']}/renew", {"ttl": 60000})
    assert r.status == 400, r
    assert_failure(r.json, "not_renewable")
    r = tlmd.http("POST", "/v1/leases/doesnotexist0000000000/renew", {})
    assert r.status == 404, r
    assert_failure(r.json, "not_found")


def test_list_route_paging_and_filters(tlmd):
    made = []
    for i in range(9):
        tags = ["odd"] if i % 2 else ["even"]
        made.append(_create(tlmd, {"options": {"ttl": 60000}, "tags": tags}).json["lease"])
    by_id = {l["id"]: l for l in made}

    def collect(**params):
        out, cursor = [], None
        for _ in range(100):
            q = dict(params)
            if cursor is not None:
                q["cursor"] = cursor
            r = tlmd.http("GET", "/v1/leases?" + urllib.parse.urlencode(q))
            assert r.status == 200, r
            body = assert_success(r.json)
            out += body["leases"]
            cursor = body["next_cursor"]
            if cursor is None:
                return out
        raise AssertionError("paging does not terminate")

    everything = collect(limit=2)
    assert sorted(l["id"] for l in everything) == sorted(by_id)
    for l in everything:
        assert l == without_value(by_id[l["id"]])
    odd = collect(tag="odd", backend="local", limit=3)
    assert sorted(l["id"] for l in odd) == sorted(l["id"] for l in made if "odd" in l["tags"])

    r = tlmd.http("GET", "/v1/leases")
    assert r.status == 200 and len(r.json["leases"]) == 9
    assert r.json["next_cursor"] is None
    for bad in ("limit=0", "limit=-1", "limit=abc"):
        r = tlmd.http("GET", "/v1/leases?" + bad)
        assert r.status == 400, (bad, r)
        assert_failure(r.json, "invalid_request")


def test_healthz(tlmd):
    r = tlmd.http("GET", "/healthz")
    assert r.status == 200, r
    body = assert_success(r.json)
    assert body["status"] == "ok" and body["leases"] == 0
    _create(tlmd, {"options": {"ttl": 60000}})
    assert tlmd.http("GET", "/healthz").json["leases"] == 1


def test_action_endpoint_status_codes(tlmd):
    """Status code mirrors the result for every reachable error code."""
    def post(obj):
        return tlmd.http("POST", "/v1/actions", obj)

    r = post({"action": "create", "options": {"ttl": 60000}, "renewable": False})
    assert r.status == 200
    lease = r.json["lease"]
    cases = [
        ({"action": "get", "token_id": lease["id"]}, 200, None),
        ({"action": "bogus"}, 400, "invalid_request"),
        ({"action": "renew", "token_id": lease["id"]}, 400, "not_renewable"),
        ({"action": "create", "backend": "nope"}, 400, "unknown_backend"),
        ({"action": "get", "token_id": "doesnotexist0000000000"}, 404, "not_found"),
        ({"action": "exchange", "token": "doesnotexist"}, 404, "invalid_token"),
    ]
    for obj, status, code in cases:
        r = post(obj)
        assert r.status == status, (obj, r)
        if code:
            assert_failure(r.json, code)
        else:
            assert_success(r.json)


def test_unknown_route(tlmd):
    r = tlmd.http("GET", "/v1/nothing-here")
    assert r.status == 404, r
    assert tlmd.alive()


def test_rest_and_actions_share_state(tlmd):
    tcp_lease = tlmd.action("tcp", {"action": "create", "options": {"ttl": 60000}})["lease"]
    r = tlmd.http("GET", f"/v1/leases/{tcp_lease['id']}")
    assert r.status == 200 and r.json["lease"] == tcp_lease
    r = tlmd.http("DELETE", f"/v1/leases/{tcp_lease['id']}")
    assert r.status == 200
    assert_failure(tlmd.action("tcp", {"action": "get", "token_id": tcp_lease["id"]}),
                   "not_found")
