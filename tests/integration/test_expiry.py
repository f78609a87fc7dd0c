"""Expiry: dead at the API from `expires` on, removed within 1 s."""

import time

from tlmd_harness import (assert_failure, assert_success, now_ms, parse_ts,
                          sleep_until_ms, wait_until)

# slack for clock granularity between this process and tlmd (same host clock)
CLOCK_SLACK_MS = 10


def test_expiry_get_polling(tlmd, transport):
    api = tlmd.api(transport)
    keeper = api.create(ttl=60000)
    lease = api.create(ttl=1000)
    expires = parse_ts(lease["expires"])
    assert expires - parse_ts(lease["issued"]) == 1000

    deadline = time.monotonic() + 5
    saw_success = False
    while True:
        sent = now_ms()
        r = api.get(lease["id"])
        if r.get("result") == "success":
            assert sent < expires + CLOCK_SLACK_MS, \
                f"get succeeded at {sent}, after expires {expires}: {r}"
            saw_success = True
        else:
            assert_failure(r, "not_found")
            assert now_ms() >= expires - CLOCK_SLACK_MS, "lease died before its expiry"
            break
        assert time.monotonic() < deadline, "lease never expired"
        time.sleep(0.02)
    assert saw_success
    # once dead it stays dead
    for _ in range(5):
        assert_failure(api.get(lease["id"]), "not_found")
        time.sleep(0.02)
    assert api.get(keeper["id"])["lease"] == keeper


def test_expired_lease_dead_at_api_immediately(tlmd, transport):
    """Right after `expires`, every operation treats the lease as dead,
    regardless of background revocation."""
    api = tlmd.api(transport)
    lease = api.create(ttl=1000, renewable=True)
    expires = parse_ts(lease["expires"])
    sleep_until_ms(expires - 300)
    assert_success(api.get(lease["id"]))
    sleep_until_ms(expires + CLOCK_SLACK_MS)
    reqs = [
        ({"action": "get", "token_id": lease["id"]}, "not_found"),
        ({"action": "renew", "token_id": lease["id"]}, "not_found"),
        ({"action": "exchange", "token": lease["value"]}, "invalid_token"),
        ({"action": "renew", "token_id": lease["id"], "ttl": 60000}, "not_found"),
        ({"action": "get", "token_id": lease["id"]}, "not_found"),
    ]
    if transport == "tcp":
        api.conn.send_many([q for q, _ in reqs])  # pipelined, as fast as possible
        replies = api.conn.recv_many(len(reqs))
    else:
        replies = [api.call(q) for q, _ in reqs]
    for (q, code), r in zip(reqs, replies):
        assert_failure(r, code)
    # and it is not resurrected by the failed renew
    assert_failure(api.get(lease["id"]), "not_found")


def test_expired_lease_removed_within_1s(tlmd, transport):
    api = tlmd.api(transport)
    keep = api.create(ttl=60000, tags=["e"])
    short = [api.create(ttl=1000, tags=["e"]) for _ in range(5)]
    last_expiry = max(parse_ts(l["expires"]) for l in short)
    assert api.health()["leases"] == 6
    sleep_until_ms(last_expiry)

    def gone():
        h = api.health()["leases"]
        ids = {l["id"] for l in api.list_all(tag="e")}
        return h == 1 and ids == {keep["id"]}

    wait_until(gone, timeout=1.0 + 0.5, what="expired leases to be removed")
    assert now_ms() <= last_expiry + 1000 + 500
    # exchange of the dead values is invalid_token, the kept lease is fine
    for l in short:
        api.fail({"action": "exchange", "token": l["value"]}, "invalid_token")
    assert api.get(keep["id"])["lease"] == keep


def test_renew_keeps_lease_alive(tlmd, transport):
    api = tlmd.api(transport)
    lease = api.create(ttl=1000, renewable=True)
    start = now_ms()
    # renew every ~300 ms for 2.5 s: it must never expire
    while now_ms() - start < 2500:
        r = api.ok({"action": "renew", "token_id": lease["id"]})
        assert r["lease"]["ttl"] == 1000
        time.sleep(0.3)
        assert_success(api.get(lease["id"]))
    # then let it lapse
    exp = parse_ts(api.get(lease["id"])["lease"]["expires"])
    sleep_until_ms(exp + CLOCK_SLACK_MS)
    assert_failure(api.get(lease["id"]), "not_found")


def test_exchange_resets_expiry(tlmd, transport):
    api = tlmd.api(transport)
    lease = api.create(ttl=1000)
    time.sleep(0.6)
    new = api.ok({"action": "exchange", "token": lease["value"]})["lease"]
    new_exp = parse_ts(new["expires"])
    assert new_exp >= parse_ts(lease["expires"]) + 500
    sleep_until_ms(parse_ts(lease["expires"]) + 50)
    # still alive past the original expiry
    assert api.get(lease["id"])["lease"]["value"] == new["value"]
    sleep_until_ms(new_exp + CLOCK_SLACK_MS)
    assert_failure(api.get(lease["id"]), "not_found")
    api.fail({"action": "exchange", "token": new["value"]}, "invalid_token")
