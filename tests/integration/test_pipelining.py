"""TCP pipelining: many requests in one write, replies in request order."""

import json
import threading
import time

from tlmd_harness import assert_failure, assert_success, check_lease


def _send_in_background(client, payload):
    """sendall from a thread so that a server applying back-pressure while we
    are not yet reading cannot deadlock the test."""
    err = []

    def run():
        try:
            client.send_raw(payload)
        except OSError as e:  # pragma: no cover - reported below
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


def test_pipeline_2000_mixed(tlmd):
    c0 = tlmd.tcp()
    lease = check_lease(assert_success(c0.request(
        {"action": "create", "options": {"ttl": 60000}}))["lease"])
    c0.close()

    n = 2000
    reqs = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            reqs.append({"action": "get", "token_id": lease["id"], "request_id": i})
        elif kind == 1:
            reqs.append({"action": "health", "request_id": i})
        elif kind == 2:
            reqs.append({"action": "get", "token_id": f"missing{i:016d}", "request_id": i})
        else:
            reqs.append({"action": "get", "token_id": lease["id"], "request_id": str(i)})
    payload = b"".join(json.dumps(r).encode() + b"\n" for r in reqs)

    with tlmd.tcp() as c:
        t, err = _send_in_background(c, payload)   # one sendall
        replies = c.recv_many(n, timeout=60)
        t.join(10)
        assert not err, err
        for i, (req, resp) in enumerate(zip(reqs, replies)):
            assert resp.get("request_id") == req["request_id"], \
                f"reply {i} out of order: {resp}"
            if i % 4 in (0, 3):
                assert assert_success(resp)["lease"] == lease
            elif i % 4 == 1:
                assert assert_success(resp)["status"] == "ok"
            else:
                assert_failure(resp, "not_found")
        # connection still usable afterwards
        assert assert_success(c.request({"action": "health", "request_id": "after"}))[
            "request_id"] == "after"


def test_pipeline_creates_then_reads(tlmd):
    n = 1000
    with tlmd.tcp() as c:
        creates = [{"action": "create", "options": {"ttl": 60000}, "tags": ["p"],
                    "meta": {"i": i}, "request_id": i} for i in range(n)]
        t, err = _send_in_background(c, b"".join(json.dumps(r).encode() + b"\n" for r in creates))
        replies = c.recv_many(n, timeout=60)
        t.join(10)
        assert not err, err
        leases = []
        for i, r in enumerate(replies):
            assert r.get("request_id") == i, f"reply {i} out of order: {r}"
            lease = check_lease(assert_success(r)["lease"])
            assert lease["meta"] == {"i": i}
            leases.append(lease)
        assert len({l["id"] for l in leases}) == n
        assert len({l["value"] for l in leases}) == n

        gets = [{"action": "get", "token_id": l["id"], "request_id": f"g{i}"}
                for i, l in enumerate(leases)]
        c.send_many(gets)
        for i, r in enumerate(c.recv_many(n, timeout=60)):
            assert r.get("request_id") == f"g{i}"
            assert assert_success(r)["lease"] == leases[i]
        assert assert_success(c.request({"action": "health"}))["leases"] == n


def test_pipeline_with_bad_lines_in_between(tlmd):
    with tlmd.tcp() as c:
        payload = (b'{"action":"health","request_id":1}\n'
                   b'this is not json\n'
                   b'{"action":"health","request_id":2}\n'
                   b'[1,2,3]\n'
                   b'{"action":"nope","request_id":3}\n'
                   b'{"action":"health","request_id":4}\n')
        c.send_raw(payload)
        r = c.recv_many(6)
        assert assert_success(r[0])["request_id"] == 1
        assert_failure(r[1], "invalid_request")
        assert assert_success(r[2])["request_id"] == 2
        assert_failure(r[3], "invalid_request")
        assert assert_failure(r[4], "invalid_request")["request_id"] == 3
        assert assert_success(r[5])["request_id"] == 4


def test_request_split_across_writes(tlmd):
    with tlmd.tcp() as c:
        msg = b'{"action":"health","request_id":"split"}\n{"action":"health","request_id":"second"}\n'
        for i in range(0, len(msg), 7):
            c.send_raw(msg[i:i + 7])
            time.sleep(0.005)
        assert c.recv()["request_id"] == "split"
        assert c.recv()["request_id"] == "second"


def test_many_connections_interleaved(tlmd):
    clients = [tlmd.tcp() for _ in range(20)]
    try:
        for round_ in range(5):
            for i, c in enumerate(clients):
                c.send({"action": "health", "request_id": f"{i}-{round_}"})
            for i, c in enumerate(reversed(clients)):
                j = len(clients) - 1 - i
                assert c.recv()["request_id"] == f"{j}-{round_}"
    finally:
        for c in clients:
            c.close()


def test_deep_pipelines_on_many_connections_share_the_budget(tlmd):
    """12 connections × 1500 pipelined creates: far more than the 2048
    requests tlmd lets all connections have in flight, so connections wait
    for each other's batches. Every request is answered, in order per
    connection, and every lease exists once."""
    conns, per_conn = 12, 1500
    results, errors = {}, []

    def run(k):
        try:
            with tlmd.tcp() as c:
                reqs = [{"action": "create", "options": {"ttl": 60000},
                         "request_id": f"{k}-{i}"} for i in range(per_conn)]
                t, err = _send_in_background(
                    c, b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
                replies = c.recv_many(per_conn, timeout=120)
                t.join(10)
                errors.extend(err)
                results[k] = replies
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:3]
    ids = set()
    for k in range(conns):
        replies = results[k]
        assert [r.get("request_id") for r in replies] == \
            [f"{k}-{i}" for i in range(per_conn)], f"connection {k}: order"
        ids |= {assert_success(r)["lease"]["id"] for r in replies}
    assert len(ids) == conns * per_conn
    with tlmd.tcp() as c:
        assert assert_success(c.request({"action": "health"}))["leases"] == len(ids)
