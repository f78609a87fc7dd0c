"""Core actions over both TCP and HTTP (POST /v1/actions)."""

import time

import pytest

from tlmd_harness import (MAX_TTL_DEFAULT, MIN_TTL_DEFAULT, assert_failure,
                          assert_success, check_lease, now_ms, parse_ts,
                          without_value)


# --------------------------------------------------------------------- create

def test_create_defaults(tlmd_factory, transport):
    d = tlmd_factory(args=["--default-ttl", "45000"])
    api = d.api(transport)
    t0 = now_ms()
    lease = check_lease(api.ok({"action": "create"})["lease"])
    t1 = now_ms()
    assert lease["backend"] == "local"
    assert lease["ttl"] == 45000
    assert lease["renewable"] is False
    assert lease["tags"] == []
    assert lease["meta"] == {}
    assert lease["description"] == ""
    issued, expires = parse_ts(lease["issued"]), parse_ts(lease["expires"])
    assert t0 - 1000 <= issued <= t1 + 1000
    assert expires - issued == 45000


def test_create_all_fields(api):
    meta = {"owner": "alice", "n": 3, "nested": {"a": [1, 2, {"b": None}]}, "u": "ünïcødé ✓"}
    t0 = now_ms()
    r = api.ok({"action": "create", "backend": "local", "options": {"ttl": 60000},
                "renewable": True, "tags": ["t1", "t2"], "meta": meta,
                "description": "integration test lease"})
    lease = check_lease(r["lease"])
    assert lease["backend"] == "local"
    assert lease["ttl"] == 60000
    assert lease["renewable"] is True
    assert lease["tags"] == ["t1", "t2"]
    assert lease["meta"] == meta
    assert lease["description"] == "integration test lease"
    issued, expires = parse_ts(lease["issued"]), parse_ts(lease["expires"])
    assert abs(issued - t0) < 2000
    assert expires - issued == 60000


def test_create_unique_ids_and_values(api):
    leases = [api.create(ttl=60000) for _ in range(100)]
    assert len({l["id"] for l in leases}) == 100
    assert len({l["value"] for l in leases}) == 100


@pytest.mark.parametrize("ttl", [MIN_TTL_DEFAULT, MAX_TTL_DEFAULT])
def test_create_ttl_bounds_default_config_accepted(api, ttl):
    lease = api.create(ttl=ttl)
    assert lease["ttl"] == ttl
    assert parse_ts(lease["expires"]) - parse_ts(lease["issued"]) == ttl


@pytest.mark.parametrize("ttl", [MIN_TTL_DEFAULT - 1, MAX_TTL_DEFAULT + 1, 0, -1, -60000])
def test_create_ttl_out_of_range_default_config(api, ttl):
    api.fail({"action": "create", "options": {"ttl": ttl}}, "invalid_request")
    assert api.health()["leases"] == 0


def test_create_ttl_bounds_configured(tlmd_factory, transport):
    d = tlmd_factory(args=["--min-ttl", "2000", "--max-ttl", "10000", "--default-ttl", "5000"])
    api = d.api(transport)
    api.fail({"action": "create", "options": {"ttl": 1999}}, "invalid_request")
    api.fail({"action": "create", "options": {"ttl": 10001}}, "invalid_request")
    assert api.create(ttl=2000)["ttl"] == 2000
    assert api.create(ttl=10000)["ttl"] == 10000
    assert api.create()["ttl"] == 5000


def test_create_unknown_backend(api):
    api.fail({"action": "create", "backend": "no-such-backend"}, "unknown_backend")
    assert api.health()["leases"] == 0


# ------------------------------------------------------------------------ get

def test_get_returns_full_lease(api):
    created = api.create(ttl=60000, tags=["a"], meta={"k": "v"}, description="d",
                         renewable=True)
    got = check_lease(assert_success(api.get(created["id"]))["lease"])
    assert got == created


def test_get_lease_id_alias(api):
    created = api.create(ttl=60000)
    got = api.ok({"action": "get", "lease_id": created["id"]})["lease"]
    assert got == created


def test_get_unknown(api):
    assert_failure(api.get("doesnotexist0000000000"), "not_found")


def test_get_missing_id(api):
    api.fail({"action": "get"}, "invalid_request")


# --------------------------------------------------------------------- revoke

def test_revoke(api):
    a = api.create(ttl=60000)
    b = api.create(ttl=60000)
    api.ok({"action": "revoke", "token_id": a["id"]})
    assert_failure(api.get(a["id"]), "not_found")
    assert api.get(b["id"])["lease"] == b
    assert api.health()["leases"] == 1
    # the revoked value can no longer be exchanged
    api.fail({"action": "exchange", "token": a["value"]}, "invalid_token")


def test_revoke_lease_id_alias(api):
    a = api.create(ttl=60000)
    api.ok({"action": "revoke", "lease_id": a["id"]})
    assert_failure(api.get(a["id"]), "not_found")


def test_revoke_unknown_and_twice(api):
    api.fail({"action": "revoke", "token_id": "doesnotexist0000000000"}, "not_found")
    a = api.create(ttl=60000)
    api.ok({"action": "revoke", "token_id": a["id"]})
    api.fail({"action": "revoke", "token_id": a["id"]}, "not_found")


# ---------------------------------------------------------------------- renew

def test_renew_default_ttl(api):
    lease = api.create(ttl=60000, renewable=True)
    time.sleep(0.05)
    t0 = now_ms()
    r = api.ok({"action": "renew", "token_id": lease["id"]})
    t1 = now_ms()
    renewed = check_lease(r["lease"])
    assert renewed["id"] == lease["id"]
    assert renewed["ttl"] == 60000
    assert renewed["issued"] == lease["issued"]
    exp = parse_ts(renewed["expires"])
    assert t0 + 60000 - 20 <= exp <= t1 + 60000 + 20
    assert exp > parse_ts(lease["expires"])
    # get reflects the renewal
    assert api.get(lease["id"])["lease"]["expires"] == renewed["expires"]


def test_renew_explicit_ttl(api):
    lease = api.create(ttl=60000, renewable=True)
    t0 = now_ms()
    r = api.ok({"action": "renew", "lease_id": lease["id"], "ttl": 120000})
    t1 = now_ms()
    renewed = r["lease"]
    assert renewed["ttl"] == 120000
    exp = parse_ts(renewed["expires"])
    assert t0 + 120000 - 20 <= exp <= t1 + 120000 + 20


def test_renew_not_renewable(api):
    lease = api.create(ttl=60000)
    api.fail({"action": "renew", "token_id": lease["id"]}, "not_renewable")
    api.fail({"action": "renew", "token_id": lease["id"], "ttl": 5000}, "not_renewable")
    assert api.get(lease["id"])["lease"] == lease


def test_renew_unknown_and_revoked(api):
    api.fail({"action": "renew", "token_id": "doesnotexist0000000000"}, "not_found")
    lease = api.create(ttl=60000, renewable=True)
    api.ok({"action": "revoke", "token_id": lease["id"]})
    api.fail({"action": "renew", "token_id": lease["id"]}, "not_found")


@pytest.mark.parametrize("ttl", ["60000", -5, 0, True, [1]])
def test_renew_bad_ttl(api, ttl):
    lease = api.create(ttl=60000, renewable=True)
    api.fail({"action": "renew", "token_id": lease["id"], "ttl": ttl}, "invalid_request")
    assert api.get(lease["id"])["lease"] == lease


def test_renew_total_life_cap(tlmd_factory, transport):
    d = tlmd_factory(args=["--min-ttl", "1000", "--max-ttl", "5000", "--default-ttl", "3000"])
    api = d.api(transport)
    lease = api.create(ttl=3000, renewable=True)
    issued = parse_ts(lease["issued"])
    cap = issued + 5000
    time.sleep(0.2)
    t0 = now_ms()
    r = api.ok({"action": "renew", "token_id": lease["id"], "ttl": 5000})
    t1 = now_ms()
    renewed = check_lease(r["lease"])
    exp = parse_ts(renewed["expires"])
    assert renewed["issued"] == lease["issued"]
    assert exp == cap, "expires must be capped at issued + max ttl"
    # the reply's ttl is what was actually granted: about cap - now (< 5000)
    assert renewed["ttl"] < 5000
    assert cap - t1 - 50 <= renewed["ttl"] <= cap - t0 + 50
    # renewing again (default ttl) still never passes the cap
    time.sleep(0.05)
    r2 = api.ok({"action": "renew", "token_id": lease["id"]})
    assert parse_ts(r2["lease"]["expires"]) <= cap
    assert api.get(lease["id"])["lease"]["expires"] == r2["lease"]["expires"]


# ------------------------------------------------------------------------- list

def test_list_basic(api):
    a = api.create(ttl=60000, tags=["x"], meta={"m": 1})
    b = api.create(ttl=60000, tags=["y"])
    c = api.create(ttl=60000, tags=["x", "y"])
    r = api.ok({"action": "list"})
    assert r["next_cursor"] is None
    by_id = {l["id"]: l for l in r["leases"]}
    assert set(by_id) == {a["id"], b["id"], c["id"]}
    for lease in (a, b, c):
        got = check_lease(by_id[lease["id"]], with_value=False)
        assert got == without_value(lease)

    xs = api.list_all(tag="x")
    assert {l["id"] for l in xs} == {a["id"], c["id"]}
    ys = api.list_all(tag="y", backend="local")
    assert {l["id"] for l in ys} == {b["id"], c["id"]}
    assert api.list_all(tag="nope") == []
    assert len(api.list_all(backend="local")) == 3


def test_list_excludes_revoked(api):
    a = api.create(ttl=60000)
    b = api.create(ttl=60000)
    api.ok({"action": "revoke", "token_id": a["id"]})
    assert [l["id"] for l in api.list_all()] == [b["id"]]


@pytest.mark.parametrize("limit", [0, -1, "10", 1.5])
def test_list_bad_limit(api, limit):
    api.create(ttl=60000)
    api.fail({"action": "list", "limit": limit}, "invalid_request")


# ------------------------------------------------------------------- exchange

def test_exchange(api):
    lease = api.create(ttl=60000, meta={"a": 1, "b": {"x": 1}}, tags=["t"],
                       description="desc")
    time.sleep(0.05)
    t0 = now_ms()
    r = api.ok({"action": "exchange", "token": lease["value"],
                "meta": {"b": 2, "c": "three"}})
    t1 = now_ms()
    new = check_lease(r["lease"])
    assert new["id"] == lease["id"]
    assert new["value"] != lease["value"]
    assert new["meta"] == {"a": 1, "b": 2, "c": "three"}
    assert new["tags"] == ["t"]
    assert new["description"] == "desc"
    assert new["backend"] == "local"
    exp = parse_ts(new["expires"])
    assert t0 + new["ttl"] - 20 <= exp <= t1 + new["ttl"] + 20
    assert exp > parse_ts(lease["expires"])
    # the old value is dead, the new one works and get shows the new state
    api.fail({"action": "exchange", "token": lease["value"]}, "invalid_token")
    got = api.get(lease["id"])["lease"]
    assert got["value"] == new["value"]
    assert got["meta"] == new["meta"]
    r2 = api.ok({"action": "exchange", "token": new["value"]})
    assert r2["lease"]["meta"] == new["meta"]
    assert r2["lease"]["value"] not in (lease["value"], new["value"])
    api.fail({"action": "exchange", "token": new["value"]}, "invalid_token")


def test_exchange_without_meta_keeps_meta(api):
    lease = api.create(ttl=60000, meta={"keep": True})
    new = api.ok({"action": "exchange", "token": lease["value"]})["lease"]
    assert new["meta"] == {"keep": True}


@pytest.mark.parametrize("token", ["not-a-real-token", "A" * 43])
def test_exchange_unknown_value(api, token):
    api.create(ttl=60000)
    api.fail({"action": "exchange", "token": token}, "invalid_token")


def test_exchange_missing_or_bad_token_field(api):
    api.fail({"action": "exchange"}, "invalid_request")
    api.fail({"action": "exchange", "token": 12345}, "invalid_request")
    lease = api.create(ttl=60000)
    api.fail({"action": "exchange", "token": lease["value"], "meta": [1]}, "invalid_request")
    # the failed attempt must not have consumed the value
    api.ok({"action": "exchange", "token": lease["value"]})


def test_exchange_meta_limit_after_merge(api):
    big = "x" * 40000
    lease = api.create(ttl=60000, meta={"a": big})
    api.fail({"action": "exchange", "token": lease["value"], "meta": {"b": big}},
             "invalid_request")
    # nothing changed, the old value is still valid
    assert api.get(lease["id"])["lease"] == lease
    new = api.ok({"action": "exchange", "token": lease["value"], "meta": {"a": "small"}})
    assert new["lease"]["meta"] == {"a": "small"}


# --------------------------------------------------------------------- health

def test_health_counts_live_leases(api):
    h = api.health()
    assert h["status"] == "ok"
    assert h["leases"] == 0
    leases = [api.create(ttl=60000) for _ in range(3)]
    assert api.health()["leases"] == 3
    api.ok({"action": "revoke", "token_id": leases[0]["id"]})
    assert api.health()["leases"] == 2


# ---------------------------------------------------------------- request_id

@pytest.mark.parametrize("rid", ["abc-123", "ünï ✓", 42, -7, 0, 3.5, ""])
def test_request_id_echo(api, rid):
    lease = api.create(ttl=60000)
    reqs = [
        {"action": "health"},
        {"action": "create", "options": {"ttl": 60000}},
        {"action": "get", "token_id": lease["id"]},
        {"action": "list", "limit": 1},
        {"action": "auth", "api_key": "whatever"},
        # failures echo it as well
        {"action": "get", "token_id": "doesnotexist0000000000"},
        {"action": "frobnicate"},
        {"action": "create", "options": {"ttl": "soon"}},
        {"action": "renew", "token_id": lease["id"]},  # not_renewable
        {"action": "exchange", "token": "nope"},
    ]
    for req in reqs:
        resp = api.call({**req, "request_id": rid})
        assert "request_id" in resp, f"{req} -> {resp}"
        assert resp["request_id"] == rid and type(resp["request_id"]) is type(rid), \
            f"{req} -> {resp}"


def test_request_id_distinguishes_requests(api):
    for i in range(20):
        assert api.ok({"action": "health", "request_id": i})["request_id"] == i
        assert api.ok({"action": "health", "request_id": f"s{i}"})["request_id"] == f"s{i}"


# ----------------------------------------------------------------------- auth

def test_auth_without_keys_configured(api):
    api.ok({"action": "auth", "api_key": "anything"})
    api.ok({"action": "auth", "api_key": ""})
    api.create(ttl=60000)
