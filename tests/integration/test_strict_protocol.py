"""The protocol refuses what it does not understand, and says what it did.

Each test here failed before the change it pins (issue 8):
* unknown fields of an action message, and unknown query parameters of a
  REST route, were silently ignored;
* `create` took a top-level `ttl` silently as the default (1 h);
* a `renew` shortened by the total-life cap did not say so;
* a POST without a body (no Content-Length, no chunks) waited 60 s;
* a last TCP line without a newline, then a half-close, got no reply.
"""

import json
import socket
import time

import pytest

from tlmd_harness import (assert_failure, assert_success, http_raw,
                          http_request, parse_ts, sleep_until_ms)

#: Answers are immediate; this only bounds a hang.
ANSWER_DEADLINE_S = 5.0


def lease_of(api, **fields):
    return assert_success(api.call({"action": "create", **fields}))["lease"]


# -- unknown fields ----------------------------------------------------------

UNKNOWN_FIELD_CASES = [
    {"action": "create", "bogus": 1},
    {"action": "create", "options": {"ttl": 60000}, "ttl_ms": 60000},
    {"action": "get", "token_id": "x", "bogus": True},
    {"action": "revoke", "token_id": "x", "forced": True},
    {"action": "renew", "token_id": "x", "ttl_ms": 5000},
    {"action": "list", "bogus": "x"},
    {"action": "list", "offset": 10},
    {"action": "exchange", "token": "t", "bogus": {}},
    {"action": "health", "verbose": True},
    {"action": "revoke_prefix", "tag": "t", "bogus": 1},
    {"action": "job", "job_id": "j", "bogus": 1},
]


@pytest.mark.parametrize("message", UNKNOWN_FIELD_CASES,
                         ids=lambda m: m["action"] + "-" + [k for k in m if k not in
                                                             ("action", "token_id", "options",
                                                              "token", "tag", "job_id")][0])
def test_unknown_fields_are_refused_naming_the_field(api, message):
    unknown = [k for k in message
               if k not in ("action", "token_id", "options", "token", "tag", "job_id")][0]
    r = api.fail({**message, "request_id": 7}, "invalid_request")
    assert f"'{unknown}'" in r["message"], r
    assert r["request_id"] == 7


def test_a_refused_create_makes_no_lease(api):
    api.fail({"action": "create", "bogus": 1}, "invalid_request")
    assert assert_success(api.call({"action": "health"}))["leases"] == 0


def test_known_fields_and_aliases_still_pass(api):
    lease = lease_of(api, backend="local", ttl=60000, renewable=True, tags=["t"],
                     meta={"k": 1}, description="d", options={})
    assert_success(api.call({"action": "get", "lease_id": lease["id"], "request_id": "r"}))
    assert_success(api.call({"action": "renew", "lease_id": lease["id"], "ttl": 60000}))
    assert_success(api.call({"action": "list", "backend": "local", "tag": "t",
                             "state": "active", "limit": 5, "cursor": None}))


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/leases?colour=red"),
    ("GET", "/v1/leases/abc?colour=red"),
    ("DELETE", "/v1/leases/abc?colour=red"),
    ("POST", "/v1/leases?colour=red"),
    ("POST", "/v1/actions?colour=red"),
    ("GET", "/healthz?colour=red"),
    ("GET", "/v1/jobs/abc?colour=red"),
])
def test_unknown_query_parameters_are_refused(tlmd, method, path):
    body = {} if method == "POST" and "actions" not in path else None
    if "actions" in path:
        body = {"action": "health"}
    r = http_request(tlmd.http_port, method, path, body)
    assert r.status == 400, r
    assert r.json["error"] == "invalid_request", r
    assert "'colour'" in r.json["message"], r


def test_rest_query_values_and_bodies_are_checked(tlmd):
    api = tlmd.api("http")
    lease = lease_of(api, ttl=60000, renewable=True)
    r = http_request(tlmd.http_port, "DELETE", f"/v1/leases/{lease['id']}?force=maybe")
    assert r.status == 400 and "force" in r.json["message"], r
    # the route names the action and the lease: a body may not name others
    r = http_request(tlmd.http_port, "POST", "/v1/leases", {"action": "revoke"})
    assert r.status == 400 and "action" in r.json["message"], r
    r = http_request(tlmd.http_port, "POST", f"/v1/leases/{lease['id']}/renew",
                     {"token_id": "another"})
    assert r.status == 400 and "token_id" in r.json["message"], r
    r = http_request(tlmd.http_port, "POST", f"/v1/leases/{lease['id']}/renew",
                     {"ttl": 60000, "colour": "red"})
    assert r.status == 400 and "'colour'" in r.json["message"], r
    # the lease is untouched by all of that
    assert_success(api.get(lease["id"]))


# -- ttl at the top of create ------------------------------------------------

def test_create_takes_ttl_at_the_top_level(api):
    lease = lease_of(api, ttl=60000)
    assert lease["ttl"] == 60000
    assert parse_ts(lease["expires"]) - parse_ts(lease["issued"]) == 60000
    # both places mean the same
    lease = lease_of(api, ttl=5000, options={"ttl": 5000})
    assert lease["ttl"] == 5000


def test_create_with_two_different_ttls_is_refused(api):
    r = api.fail({"action": "create", "ttl": 60000, "options": {"ttl": 5000}},
                 "invalid_request")
    assert "ttl" in r["message"] and "options.ttl" in r["message"], r
    api.fail({"action": "create", "ttl": "60000"}, "invalid_request")
    api.fail({"action": "create", "ttl": 0}, "invalid_request")


def test_role_at_the_top_level_and_in_options_must_agree(api):
    r = api.fail({"action": "create", "role": "a", "options": {"role": "b"}},
                 "invalid_request")
    assert "role" in r["message"], r
    api.fail({"action": "create", "role": 5}, "invalid_request")
    # the local backend has no roles: refused, not ignored
    r = api.fail({"action": "create", "role": "reader"}, "invalid_request")
    assert "role" in r["message"], r


# -- renew says when the total-life cap shortened it -------------------------

def test_renew_says_capped_when_the_total_life_cap_shortened_it(tlmd_factory, transport):
    d = tlmd_factory(args=["--min-ttl", "100", "--max-ttl", "30000"])
    api = d.api(transport)
    lease = lease_of(api, ttl=20000, renewable=True)
    r = assert_success(api.call({"action": "renew", "token_id": lease["id"], "ttl": 10000}))
    assert "capped" not in r, r
    assert r["lease"]["ttl"] == 10000
    # a full max ttl from any later moment passes issued + max ttl
    sleep_until_ms(parse_ts(lease["issued"]) + 5)
    r = assert_success(api.call({"action": "renew", "token_id": lease["id"], "ttl": 30000}))
    assert r.get("capped") is True, r
    assert r["lease"]["ttl"] < 30000
    assert parse_ts(r["lease"]["expires"]) == parse_ts(lease["issued"]) + 30000
    api.close()


# -- transport ---------------------------------------------------------------

def test_a_post_without_a_body_has_an_empty_body(tlmd):
    lease = lease_of(tlmd.api("tcp"), ttl=60000, renewable=True)
    t0 = time.monotonic()
    status, raw, resp = http_raw(
        tlmd.http_port,
        f"POST /v1/leases/{lease['id']}/renew HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        timeout=ANSWER_DEADLINE_S)
    assert status == 200, raw
    assert time.monotonic() - t0 < ANSWER_DEADLINE_S
    body = json.loads(resp.raw)
    assert body["lease"]["id"] == lease["id"]
    # a body-less POST to /v1/actions is an empty message, refused at once
    status, raw, resp = http_raw(
        tlmd.http_port, b"POST /v1/actions HTTP/1.1\r\nHost: x\r\n\r\n",
        timeout=ANSWER_DEADLINE_S)
    assert status == 400, raw


def test_a_last_tcp_line_without_newline_is_answered(tlmd):
    s = socket.create_connection(("127.0.0.1", tlmd.tcp_port), timeout=ANSWER_DEADLINE_S)
    try:
        s.sendall(b'{"action":"health","request_id":1}\n{"action":"health","request_id":2}')
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["request_id"] for r in replies] == [1, 2], out
    assert all(r["result"] == "success" for r in replies)
