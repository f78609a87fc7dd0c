"""Ockam's Token Lease Manager documentation, replayed (issue 15).

Every example of /work/shared/reference/ockam-token-lease-manager.md (our
origin): create with InfluxDB options (`ttl`, `orgID`, `permissions`), get
and revoke, over TCP and over HTTP (`POST /v1/actions`), against the
InfluxDB 2.x fake.  Replies must carry every field the documentation shows,
with the same JSON types.  The example's `orgID` is replaced by the fake's
own org id (the fake draws its ids), and the example's permission (read on
`authorizations`) is dangerous, so the backend's role allows it explicitly.
"""

import json

import pytest

from backends_harness import V2Env, write_tlmd_config
from tlmd_harness import assert_failure, parse_ts

# The lease fields of the documentation's "InfluxDB's token example".
OCKAM_LEASE = {
    "value": "Cui5qBH9ItFvzKJqaCHedZ0ZY_fZnAr63ajnZ4DX1zz6_Q-eJUBmGAi-o_I2j8P_9hbyxqG02NlkPLjP1qRudQ==",
    "ttl": 60000,
    "tags": [],
    "renewable": False,
    "issued": "2021-08-26T08:59:17.991429689Z",
    "id": "080c6b2f99f7e000",
}

CREATE_EXAMPLE = {
    "action": "create",
    "options": {
        "ttl": 60000,
        "orgID": "217eba198af721b8",
        "permissions": [
            {"action": "read", "resource": {"type": "authorizations"}}
        ],
    },
}

OCKAM_ROLE = {"permissions": [{"action": "read",
                               "resource": {"type": "authorizations"}}],
              "allow_dangerous": True}


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ockam-secrets")


@pytest.fixture
def v2(influxdb2_fake_module, secrets_dir):
    env = V2Env(influxdb2_fake_module, secrets_dir)
    env.reset()
    return env


@pytest.fixture
def ockam_tlmd(v2, tlmd_factory, tmp_path):
    """tlmd whose default backend is the fake, as in Ockam's examples
    (which name no backend)."""
    cfg = write_tlmd_config(tmp_path, v2.config(roles={"ockam": OCKAM_ROLE}),
                            default_backend=v2.name)
    return tlmd_factory(config=cfg)


def create_example(v2):
    msg = json.loads(json.dumps(CREATE_EXAMPLE))
    msg["options"]["orgID"] = v2.fake.org_id
    return msg


def check_like_ockam(lease):
    """Every field of Ockam's lease, with the type Ockam shows."""
    for key, example in OCKAM_LEASE.items():
        assert key in lease, f"the lease lacks Ockam's field {key!r}: {lease}"
        assert type(lease[key]) is type(example), (key, lease[key])
    parse_ts(lease["issued"])
    return lease


def send(d, transport, msg):
    """One action message; returns the reply's raw bytes and its object."""
    if transport == "tcp":
        with d.tcp() as c:
            c.send(msg)
            raw = c.recv_line()
    else:
        raw = d.http("POST", "/v1/actions", msg).raw
    return raw, json.loads(raw)


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_create_get_revoke_as_documented(ockam_tlmd, v2, transport):
    _, created = send(ockam_tlmd, transport, create_example(v2))
    assert created["result"] == "success", created
    lease = check_like_ockam(created["lease"])
    assert lease["ttl"] == 60000 and lease["tags"] == [] \
        and lease["renewable"] is False
    auth = v2.authorization(lease)
    assert auth is not None and auth["token"] == lease["value"]
    assert [(p["action"], p["resource"]["type"], p["resource"]["orgID"])
            for p in auth["permissions"]] == \
        [("read", "authorizations", v2.fake.org_id)]

    _, got = send(ockam_tlmd, transport, {"action": "get", "token_id": lease["id"]})
    assert got["result"] == "success", got
    assert check_like_ockam(got["lease"]) == lease

    raw, revoked = send(ockam_tlmd, transport,
                        {"action": "revoke", "token_id": lease["id"]})
    assert raw == b'{"result":"success"}', raw
    assert v2.authorization(lease) is None
    _, gone = send(ockam_tlmd, transport, {"action": "get", "token_id": lease["id"]})
    assert_failure(gone, "not_found")


def test_create_in_another_org_is_refused(ockam_tlmd, v2):
    before = v2.server_credentials()
    _, r = send(ockam_tlmd, "tcp", CREATE_EXAMPLE)  # the example's own orgID
    assert_failure(r, "invalid_request")
    assert "options.orgID" in r["message"], r["message"]
    assert v2.server_credentials() == before


def test_response_fields_of_the_documentation(ockam_tlmd, v2):
    """result is "success" or "failure", lease and message as documented."""
    _, ok = send(ockam_tlmd, "tcp", create_example(v2))
    assert ok["result"] == "success" and isinstance(ok["lease"], dict)
    _, bad = send(ockam_tlmd, "tcp", {"action": "get", "token_id": "080c6f2b3af7e000"})
    assert bad["result"] == "failure" and isinstance(bad["message"], str)


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_local_backend_takes_the_same_messages(tlmd, transport):
    _, created = send(tlmd, transport, {"action": "create", "options": {"ttl": 60000}})
    lease = check_like_ockam(created["lease"])
    _, got = send(tlmd, transport, {"action": "get", "token_id": lease["id"]})
    assert got["lease"] == lease
    raw, _ = send(tlmd, transport, {"action": "revoke", "token_id": lease["id"]})
    assert raw == b'{"result":"success"}', raw
