"""Concurrent exchange of the same value on two connections: exactly one wins."""

import threading

from tlmd_harness import assert_failure, assert_success, http_request


def _race(tlmd, transport, value, request_ids):
    barrier = threading.Barrier(len(request_ids))
    results = [None] * len(request_ids)
    conns = []
    if transport == "tcp":
        conns = [tlmd.tcp() for _ in request_ids]

    def worker(i):
        req = {"action": "exchange", "token": value, "meta": {"winner": i},
               "request_id": request_ids[i]}
        try:
            barrier.wait(5)
            if transport == "tcp":
                results[i] = conns[i].request(req)
            else:
                r = http_request(tlmd.http_port, "POST", "/v1/actions", req)
                results[i] = (r.status, r.json)
        except Exception as e:  # reported by the assertions below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(request_ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in conns:
        c.close()
    return results


def test_concurrent_double_exchange(tlmd, transport):
    api = tlmd.api(transport)
    for round_ in range(15):
        lease = api.create(ttl=60000, meta={"round": round_})
        results = _race(tlmd, transport, lease["value"], [f"a{round_}", f"b{round_}"])
        bodies = []
        for r in results:
            assert not isinstance(r, Exception), r
            if transport == "http":
                status, body = r
                assert isinstance(body, dict), r
                assert status == (200 if body.get("result") == "success" else 404), r
                r = body
            bodies.append(r)
        winners = [b for b in bodies if b.get("result") == "success"]
        losers = [b for b in bodies if b.get("result") != "success"]
        assert len(winners) == 1, f"round {round_}: expected exactly one winner: {bodies}"
        assert len(losers) == 1
        assert_failure(losers[0], "invalid_token")
        win = winners[0]["lease"]
        assert win["id"] == lease["id"]
        assert win["value"] != lease["value"]
        # the stored state is the winner's
        got = assert_success(api.get(lease["id"]))["lease"]
        assert got["value"] == win["value"]
        assert got["meta"] == win["meta"]
        assert got["meta"]["round"] == round_
        # the old value is dead, the winner's value works
        api.fail({"action": "exchange", "token": lease["value"]}, "invalid_token")
        api.ok({"action": "exchange", "token": win["value"]})


def test_many_concurrent_exchanges_one_winner(tlmd):
    api = tlmd.api("tcp")
    lease = api.create(ttl=60000)
    results = _race(tlmd, "tcp", lease["value"], list(range(8)))
    assert not any(isinstance(r, Exception) for r in results), results
    ok = [r for r in results if r.get("result") == "success"]
    assert len(ok) == 1, results
    for r in results:
        if r is not ok[0]:
            assert_failure(r, "invalid_token")
