"""Issue 10: every request on one TCP connection sees the effects of every
earlier request on that connection, pipelined or not; get, list and health
agree at every moment."""

import json

from tlmd_harness import assert_success


def test_pipelined_create_then_list_shows_the_lease(tlmd):
    with tlmd.tcp() as c:
        for round_ in range(20):
            reqs = [
                {"action": "create", "options": {"ttl": 60000},
                 "tags": [f"r{round_}"], "request_id": "c"},
                {"action": "list", "tag": f"r{round_}", "request_id": "l"},
                {"action": "health", "request_id": "h"},
            ]
            c.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
            created, listed, health = c.recv_many(3, timeout=30)
            lease = assert_success(created)["lease"]
            ids = [x["id"] for x in assert_success(listed)["leases"]]
            assert ids == [lease["id"]], (round_, listed)
            assert assert_success(health)["leases"] == round_ + 1, health


def test_pipelined_revoke_prefix_then_health_agrees_with_get(tlmd):
    with tlmd.tcp() as c:
        leases = [assert_success(c.request(
            {"action": "create", "options": {"ttl": 60000}, "tags": ["gone"]}
        ))["lease"] for _ in range(50)]
        keep = assert_success(c.request(
            {"action": "create", "options": {"ttl": 60000}}))["lease"]
        reqs = [
            {"action": "revoke_prefix", "tag": "gone", "request_id": "j"},
            {"action": "health", "request_id": "h"},
            {"action": "get", "token_id": leases[-1]["id"], "request_id": "g"},
            {"action": "list", "request_id": "l"},
        ]
        c.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
        job, health, got, listed = c.recv_many(4, timeout=30)
        assert_success(job)
        assert got.get("result") != "success", got
        assert assert_success(health)["leases"] == 1, health
        assert [x["id"] for x in assert_success(listed)["leases"]] \
            == [keep["id"]]
