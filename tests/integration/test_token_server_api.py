"""token_server 0.1.15's REST API over our core (issue 15).

Replays every example of /work/shared/reference/token_server-0.1.15-README.txt
(POST, PUT, DELETE /token, HEAD /dump, its metadata and PUT result shapes)
byte for byte where it shows bytes, plus what its clients send: the token
in the JSON body, `{"token":…,"meta":…}`, as its own test client does.
Leases made here are ordinary `local` leases (tag `token_server`), so the
core's limits, auth, errors and expiry apply to them.
"""

import json

import pytest

from tlmd_harness import (LOCAL_VALUE_RE, assert_failure, assert_success,
                          parse_ts, write_key_file)

DOC_META = {"name": "My user", "year": 2022, "period": 11}
TWO_HOURS = 2 * 3600 * 1000


def post_token(d, meta, path="/token", headers=None):
    r = d.http("POST", path, {"meta": meta}, headers=headers)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    token = r.raw.decode()
    assert LOCAL_VALUE_RE.match(token), token
    return token


def put_token(d, body, path="/token"):
    r = d.http("PUT", path, body)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json", r.headers
    return r


def lease_of(d, token):
    got = d.http("GET", f"/v1/leases/{token.split('.')[0]}")
    return assert_success(got.json)["lease"] if got.status == 200 else None


def test_post_token_answers_the_token_alone(tlmd):
    token = post_token(tlmd, DOC_META)
    lease = lease_of(tlmd, token)
    assert lease["value"] == token and lease["backend"] == "local"
    assert lease["meta"] == DOC_META and lease["tags"] == ["token_server"]
    assert lease["ttl"] == TWO_HOURS
    assert parse_ts(lease["expires"]) - parse_ts(lease["issued"]) == TWO_HOURS


def test_put_token_exchanges_and_merges_meta_byte_for_byte(tlmd):
    token = post_token(tlmd, DOC_META)
    r = put_token(tlmd, {"token": token, "meta": {"period": 12, "unit": "sales"}})
    new = r.json["Ok"]["token"]
    assert new != token and LOCAL_VALUE_RE.match(new)
    merged = {"name": "My user", "period": 12, "unit": "sales", "year": 2022}
    expected = ('{"Ok":{"token":"%s","meta":%s}}'
                % (new, json.dumps(merged, separators=(",", ":"), sort_keys=True)))
    assert r.raw == expected.encode(), r.raw
    # the used token is gone: the documented error, byte for byte
    r = put_token(tlmd, {"token": token})
    assert r.raw == b'{"Err":"InvalidToken"}', r.raw
    # without meta, or with null (as its clients may send), meta stays
    for body in ({"token": new}, {"token": None, "meta": None}):
        body["token"] = new
        r = put_token(tlmd, body)
        assert r.json["Ok"]["meta"] == merged
        new = r.json["Ok"]["token"]


def test_put_unknown_token_is_invalid(tlmd):
    for token in ("never-issued", "Gk3Nq2m0TqWb9yX1c4Zr8A.0S2pyJXovkmWi"):
        r = put_token(tlmd, {"token": token, "meta": {}})
        assert r.raw == b'{"Err":"InvalidToken"}', r.raw


def test_delete_token_revokes_and_answers_202(tlmd):
    token = post_token(tlmd, DOC_META)
    r = tlmd.http("DELETE", "/token", {"token": token})
    assert r.status == 202 and r.raw == b"", r
    assert lease_of(tlmd, token) is None
    assert put_token(tlmd, {"token": token}).raw == b'{"Err":"InvalidToken"}'
    # a token that works no more is gone already: 202 as in token_server
    assert tlmd.http("DELETE", "/token", {"token": token}).status == 202
    assert tlmd.http("DELETE", "/token", {"token": "no-such-token"}).status == 202


def test_delete_needs_the_token_value_not_just_its_id(tlmd):
    token = post_token(tlmd, DOC_META)
    forged = token.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert tlmd.http("DELETE", "/token", {"token": forged}).status == 202
    assert lease_of(tlmd, token)["value"] == token


def test_the_web_server_flow_of_the_documentation(tlmd):
    """Login, then each request exchanges the token and adds state."""
    token = post_token(tlmd, {"name": "My user"})
    for period in range(1, 6):
        r = put_token(tlmd, {"token": token, "meta": {"period": period}})
        ok = r.json["Ok"]
        assert ok["meta"] == {"name": "My user", "period": period}
        token = ok["token"]
    assert tlmd.http("DELETE", "/token", {"token": token}).status == 202


@pytest.mark.parametrize("method,body,says", [
    ("POST", {}, "meta"),
    ("POST", {"meta": [1, 2]}, "meta"),
    ("POST", {"meta": {}, "ttl": 5}, "unknown field 'ttl'"),
    ("POST", b"{not json", "not valid JSON"),
    ("PUT", {"meta": {}}, "token"),
    ("PUT", {"token": 5}, "token"),
    ("PUT", {"token": "t", "meta": "x"}, "meta"),
    ("PUT", {"token": "t", "extra": 1}, "unknown field 'extra'"),
    ("DELETE", {}, "token"),
    ("DELETE", {"token": "t", "meta": {}}, "unknown field 'meta'"),
])
def test_bad_bodies_are_refused_naming_the_field(tlmd, method, body, says):
    r = tlmd.http(method, "/token", body)
    assert r.status == 400, r
    assert says in assert_failure(r.json, "invalid_request")["message"]


def test_core_limits_apply(tlmd):
    r = tlmd.http("POST", "/token", {"meta": {"x": "y" * (64 * 1024)}})
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")
    token = post_token(tlmd, {"x": "y" * (60 * 1024)})
    r = tlmd.http("PUT", "/token", {"token": token, "meta": {"z": "y" * (8 * 1024)}})
    assert r.status == 400, r
    assert_failure(r.json, "invalid_request")
    # refused before the swap: the client keeps a working token
    assert lease_of(tlmd, token)["value"] == token


def test_methods_and_query_parameters(tlmd):
    r = tlmd.http("GET", "/token")
    assert r.status == 405 and r.headers["allow"] == "POST, PUT, DELETE", r
    r = tlmd.http("POST", "/token?ttl=5", {"meta": {}})
    assert r.status == 400, r
    assert "query" in assert_failure(r.json, "invalid_request")["message"]
    # HEAD /dump only exists with --dump, as in token_server
    assert tlmd.http("HEAD", "/dump").status == 404


def test_dump_logs_expiry_and_meta_never_a_token(tlmd_factory):
    d = tlmd_factory(args=["--dump"])
    tokens = [post_token(d, {"user": f"u{i}"}) for i in range(3)]
    d.action("tcp", {"action": "create", "meta": {"user": "not-mine"}})
    r = d.http("HEAD", "/dump")
    assert r.status == 202 and r.raw == b"", r
    assert d.http("GET", "/dump").status == 405
    log = d.read_log()
    lines = [json.loads(line.split("token_server dump: ", 1)[1])
             for line in log.splitlines()
             if "token_server dump: {" in line]
    assert sorted(x["meta"]["user"] for x in lines) == ["u0", "u1", "u2"]
    for x in lines:
        assert set(x) == {"expires", "meta"}
        parse_ts(x["expires"])
    assert "token_server dump: 3 tokens" in log
    for token in tokens:
        assert token not in log and token.split(".")[1] not in log


def test_token_lifetime_flag(tlmd_factory):
    d = tlmd_factory(args=["--token-lifetime", "1800000"])
    assert lease_of(d, post_token(d, {}))["ttl"] == 1800000
    for bad in ("60000", "345600001"):
        rc, err = tlmd_factory(start=False, args=["--token-lifetime", bad]) \
            .start_expect_failure()
        assert rc != 0 and "--token-lifetime" in err and "1800000" in err \
            and "345600000" in err, err
    rc, err = tlmd_factory(start=False, args=["--token-lifetime", "7200000",
                                             "--max-ttl", "3600000"]) \
        .start_expect_failure()
    assert rc != 0 and "between min_ttl_ms and max_ttl_ms" in err, err
    # unset, the lifetime follows a narrower --max-ttl
    d = tlmd_factory(args=["--max-ttl", "600000"])
    assert lease_of(d, post_token(d, {}))["ttl"] == 600000


def test_prefix_flag(tlmd_factory):
    d = tlmd_factory(args=["--token-server-prefix", "/ts/"])
    token = post_token(d, DOC_META, path="/ts/token")
    assert put_token(d, {"token": token}, path="/ts/token").json["Ok"]["meta"] == DOC_META
    assert d.http("POST", "/token", {"meta": {}}).status == 404
    for bad in ("ts", "/ts", "/v1/", "/a?b/"):
        rc, err = tlmd_factory(start=False, args=["--token-server-prefix", bad]) \
            .start_expect_failure()
        assert rc != 0 and "token_server_prefix" in err, err


def test_api_keys_apply(tlmd_factory, tmp_path):
    keys = write_key_file(tmp_path / "keys", ["k1"])
    d = tlmd_factory(api_key_file=keys)
    r = d.http("POST", "/token", {"meta": {}})
    assert r.status == 401, r
    assert_failure(r.json, "unauthorized")
    token = post_token(d, {}, headers={"Authorization": "Bearer k1"})
    r = d.http("PUT", "/token", {"token": token})
    assert r.status == 401, r
