"""Shared mode (issue 11): several tlmd instances over one PostgreSQL
database (``--storage postgresql://…`` and ``--storage-password-file``), a
real PostgreSQL 15 and, for ``redis_acl``, a real redis-server, both from
tests/servers.

Covered:

1. any instance answers any request about any lease, over TCP and HTTP:
   a lease made at A is found at B, renewed at C, exchanged at B, listed
   and paged at each (a page chain that hops instances), counted by
   ``health`` alike everywhere, revoked at B and then not_found at C;
2. 50 concurrent exchanges of one value spread over three instances (TCP
   and HTTP mixed): exactly one wins, the rest get invalid_token;
3. an expiry wave of short redis_acl leases made at three instances, one
   instance SIGKILLed during the wave: every user is deleted at Redis at
   most 5 s after its lease's expires, never before, and once (deletions
   are counted by a relay in front of redis-server that knows which
   instance sent each ``ACL DELUSER``; a second deletion is allowed only
   after one by the killed instance before it died);
4. a burst of redis_acl creates at two instances, one SIGKILLed in the
   middle: every acknowledged lease is readable at the survivor, and after
   reconciliation every Redis user has a lease and every lease its user;
5. PostgreSQL stopped and started under a create load at two instances:
   failures are storage_error, answered in bounded time, health is
   degraded meanwhile, no acknowledged lease is lost, and leases that
   expired during the outage are revoked at Redis right after it;
6. two instances racing to start on an empty database (three rounds):
   both come up, exactly one made the schema, leases work at both;
7. a revoke_prefix job started at A (its backend failing the revocations),
   A SIGKILLed right after: B finishes the job, every matching lease is
   revoked at the backend once, and ``job`` at B says done;
8. an instance stopped with SIGTERM: another revokes its leases, each
   once, within the bound;
9. renews and exchanges at B within 15 ms of the expiry that A times:
   what B acknowledged holds at C (never revoked at Redis), what B
   refused is dead everywhere;
10. an instance SIGKILLed while PostgreSQL is down: once it is back, the
    survivor revokes the dead one's leases that expired meanwhile;
11. revoke_prefix at one instance right after a create at another (240
    rounds over four instances): the job matches the lease, and ``job`` at
    the other instance shows its total at once.

Timing asserts are only the issue's bounds (5 s after ``expires`` for a
revocation, also after a takeover) and deadlines of polls.  About 50 s.
"""

import random
import signal
import threading
import time

import pytest

from backends_harness import RedisEnv, V2Env, write_tlmd_config
from multi_harness import (RespLog, database, gets, health_of,  # noqa: F401
                           password_file, pg, pipelined, start_instances,
                           stored_ids, tlm_users)
from tlmd_harness import (ConnectionClosed, TcpClient, assert_failure,
                          assert_success, check_lease, http_request, now_ms,
                          parse_ts, sleep_until_ms, wait_until, without_value)

#: a lease is revoked at its backend at most this long after its expires,
#: also when the instance that made it died just before (issue 11)
REVOKE_BOUND_S = 5.0
#: tlmd's clock may trail the wall clock by under a millisecond, and the
#: relay sees a command a little after tlmd sent it
CLOCK_SLACK_S = 0.05
#: reconciling a dead instance's intents waits for the backend's timeout
RECONCILE_DEADLINE_S = 40.0
#: a request that needs PostgreSQL while it is down fails within this long
#: (README: about 17 s for a hung server; a stopped one fails at once)
STORAGE_ERROR_BOUND_S = 20.0
FAST_RETRIES = {"retry_base_ms": 200, "retry_max_ms": 1000}


@pytest.fixture
def redis_env(redis_server, tmp_path):
    return RedisEnv(redis_server, tmp_path / "secrets")


def storage_of(pg_srv, db):
    return pg_srv.conninfo(db)


def lease_map(replies):
    return {r["lease"]["id"]: r["lease"] for r in replies}


# ---------------------------------------------------------------------------
# 1. any instance serves any lease
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("transport_", ["tcp", "http"])
def test_any_instance_serves_any_lease(tlmd_factory, pg, database, password_file,
                                       transport_):
    """Every action goes to another instance than the one that made or last
    changed the lease; each answer must already show the change."""
    a, b, c = start_instances(tlmd_factory, 3, storage_of(pg, database), password_file)
    A, B, C = (d.api(transport_) for d in (a, b, c))
    made = [A.create(ttl=600000, tags=["multi", f"n{i}"], renewable=True,
                     meta={"i": i, "u": "ü✓"}, description=f"lease {i}")
            for i in range(7)]
    latest = {lease["id"]: lease for lease in made}

    # get at B: the lease as A acknowledged it
    for lease in made:
        assert assert_success(B.get(lease["id"]))["lease"] == lease, \
            "get at B differs from the create's reply at A"
    # renew at C: get at A and B show the new term
    renewed = assert_success(C.call({"action": "renew", "token_id": made[2]["id"],
                                     "ttl": 300000}))["lease"]
    assert parse_ts(renewed["expires"]) < parse_ts(made[2]["expires"])
    latest[renewed["id"]] = renewed
    for api in (A, B):
        assert assert_success(api.get(renewed["id"]))["lease"] == renewed, \
            "a renewal acknowledged by C is not seen by another instance"
    # exchange at B of a value A issued: the old value is dead at C, the new
    # one works at A
    swapped = assert_success(B.call({"action": "exchange", "token": made[3]["value"],
                                     "meta": {"x": 1}}))["lease"]
    assert swapped["id"] == made[3]["id"] and swapped["value"] != made[3]["value"]
    latest[swapped["id"]] = swapped
    assert_failure(C.call({"action": "exchange", "token": made[3]["value"]}),
                   "invalid_token")
    assert assert_success(A.get(swapped["id"]))["lease"]["value"] == swapped["value"]
    swapped = assert_success(A.call({"action": "exchange", "token": swapped["value"]}))["lease"]
    latest[swapped["id"]] = swapped

    # leases made at B and C join in
    for api in (B, C):
        lease = api.create(ttl=600000, tags=["multi", "other"])
        latest[lease["id"]] = lease
    other = lease["id"]             # made at C
    ids = set(latest)

    # list at each instance: the same leases, in the same order
    orders = []
    for api in (A, B, C):
        listed = api.list_all(page_limit=3, tag="multi")
        assert {x["id"] for x in listed} == ids
        assert len(listed) == len(ids), "a lease listed twice"
        for x in listed:
            want = without_value(latest[x["id"]])
            assert x == want, f"listed {x} != {want}"
        orders.append([x["id"] for x in listed])
    assert orders[0] == orders[1] == orders[2], "instances list in different orders"
    # a page chain that hops instances: A's cursor continues at B, B's at C
    seen, cursor, hops = [], None, 0
    while True:
        api = (A, B, C)[hops % 3]
        req = {"action": "list", "tag": "multi", "limit": 2}
        if cursor is not None:
            req["cursor"] = cursor
        page = assert_success(api.call(req))
        seen += [x["id"] for x in page["leases"]]
        cursor, hops = page["next_cursor"], hops + 1
        if cursor is None:
            break
        assert hops < 50
    assert seen == orders[0], "paging across instances lost or repeated a lease"
    assert {x["id"] for x in C.list_all(tag="n4")} == {made[4]["id"]}
    # health counts every live lease in the database, at every instance
    for api in (A, B, C):
        assert api.health()["leases"] == len(ids)

    # revoke at B: gone at C and A at once
    assert_success(B.call({"action": "revoke", "token_id": made[0]["id"]}))
    assert_failure(C.get(made[0]["id"]), "not_found")
    assert_failure(A.call({"action": "renew", "token_id": made[0]["id"]}), "not_found")
    assert_failure(A.call({"action": "exchange", "token": made[0]["value"]}),
                   "invalid_token")
    # and one made at C, revoked at A, not_found at B
    assert_success(A.call({"action": "revoke", "token_id": other}))
    assert_failure(B.get(other), "not_found")
    left = ids - {made[0]["id"], other}
    for api in (A, B, C):
        assert {x["id"] for x in api.list_all(page_limit=4)} == left
        assert api.health()["leases"] == len(left)
    assert stored_ids(pg, database) == left
    if transport_ == "http":
        # the REST routes too
        r = c.http("GET", f"/v1/leases/{made[1]['id']}")
        assert r.status == 200 and r.json["lease"] == latest[made[1]["id"]], r
        r = b.http("DELETE", f"/v1/leases/{made[1]['id']}")
        assert r.status == 200, r
        assert a.http("GET", f"/v1/leases/{made[1]['id']}").status == 404
    for api in (A, B, C):
        api.close()


# ---------------------------------------------------------------------------
# 2. exchange is atomic across instances
# ---------------------------------------------------------------------------

def _exchange_race(instances, value, n, round_):
    """n exchanges of value at once, worker i at instance i % len, over TCP
    (even i) or HTTP (odd i).  Returns the reply bodies (or exceptions)."""
    barrier = threading.Barrier(n)
    results = [None] * n
    conns = {i: TcpClient(instances[i % len(instances)].tcp_port)
             for i in range(0, n, 2)}

    def worker(i):
        d = instances[i % len(instances)]
        req = {"action": "exchange", "token": value, "meta": {"winner": i},
               "request_id": f"r{round_}-{i}"}
        try:
            barrier.wait(10)
            if i in conns:
                results[i] = conns[i].request(req)
            else:
                r = http_request(d.http_port, "POST", "/v1/actions", req)
                assert isinstance(r.json, dict), r
                ok = r.json.get("result") == "success"
                assert r.status == (200 if ok else 404), r
                results[i] = r.json
        except Exception as e:   # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for conn in conns.values():
        conn.close()
    return results


def test_exchange_is_atomic_across_instances(tlmd_factory, pg, database, password_file):
    ds = start_instances(tlmd_factory, 3, storage_of(pg, database), password_file)
    apis = [d.api("tcp") for d in ds]
    for round_ in range(4):
        lease = apis[round_ % 3].create(ttl=60000, meta={"round": round_})
        results = _exchange_race(ds, lease["value"], 50, round_)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[:3]
        winners = [i for i, r in enumerate(results) if r.get("result") == "success"]
        assert len(winners) == 1, \
            f"round {round_}: {len(winners)} of 50 exchanges won (workers {winners})"
        for i, r in enumerate(results):
            if i != winners[0]:
                assert_failure(r, "invalid_token")
                assert r.get("request_id") == f"r{round_}-{i}"
        win = results[winners[0]]["lease"]
        assert win["id"] == lease["id"] and win["value"] != lease["value"]
        assert win["meta"] == {"round": round_, "winner": winners[0]}
        # every instance knows the winner's value, and only it
        for api in apis:
            assert assert_success(api.get(lease["id"]))["lease"]["value"] == win["value"]
            assert_failure(api.call({"action": "exchange", "token": lease["value"]}),
                           "invalid_token")
        # the winner's value works, at another instance than the winner's
        assert_success(apis[(winners[0] + 1) % 3].call(
            {"action": "exchange", "token": win["value"]}))
    for api in apis:
        api.close()


# ---------------------------------------------------------------------------
# 3. an expiry wave, one instance killed during it
# ---------------------------------------------------------------------------

WAVE = 150
WAVE_TTL_MS = (1000, 3000)
KEEP = 5
#: A is killed this long after the first lease of the wave expired; for
#: the last HOLD_MS before, its revocations never reach Redis
KILL_AFTER_FIRST_MS = 500
HOLD_MS = 300


def test_expiry_wave_with_a_killed_instance(tlmd_factory, pg, database, password_file,
                                            redis_env, tmp_path):
    """150 redis_acl leases (ttl 1 to 3 s) made at three instances, 50
    each.  A is SIGKILLed 0.5 s after the first of them expired; for the
    0.3 s before, the relay kept its ACL DELUSERs from Redis, so it dies
    with revocations claimed and not done (five of its leases come due in
    that window).  Every user must be deleted at Redis (the relay's log of
    ACL DELUSER, checked against ACL USERS) no sooner than its lease's
    expires and at most 5 s after it: the ones A was revoking, and A's
    leases due after it died, too.  Each user is deleted once: two
    deletions are allowed only when the first was A's, sent before it died
    (its removal from the database may not have happened).  Five long
    leases made at A are not touched."""
    srv = redis_env.srv
    relay = RespLog(srv.port)
    try:
        cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings(port=relay.port)},
                                default_backend="redis", **FAST_RETRIES)
        ds = start_instances(tlmd_factory, 3, storage_of(pg, database), password_file,
                             config=cfg)
        for d in ds:
            relay.watch(d.name, d)
        a = ds[0]
        rng = random.Random(20261202)
        keep = [assert_success(r)["lease"] for r in pipelined(
            a, [{"action": "create", "backend": "redis", "tags": ["keep"],
                 "options": {"ttl": 600000}}] * KEEP)]

        made = {}                      # lease -> (creator, expires ms)
        replies = [None] * len(ds)

        def create_at(k):
            reqs = [{"action": "create", "backend": "redis", "tags": ["wave"],
                     "options": {"ttl": rng_ttls[k][j]}} for j in range(WAVE // 3)]
            replies[k] = pipelined(ds[k], reqs, window=16)

        rng_ttls = [[rng.randint(*WAVE_TTL_MS) for _ in range(WAVE // 3)] for _ in ds]
        # the first lease of the wave (B's) and five of A's that come due
        # while A's revocations are held back, just before it dies
        rng_ttls[1][0] = WAVE_TTL_MS[0]
        rng_ttls[0][:5] = [WAVE_TTL_MS[0] + KILL_AFTER_FIRST_MS - HOLD_MS // 2] * 5
        threads = [threading.Thread(target=create_at, args=(k,)) for k in range(len(ds))]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        created_s = time.monotonic() - t0
        for d, rs in zip(ds, replies):
            assert rs is not None, f"the creates at {d.name} did not finish"
            for r in rs:
                lease = check_lease(assert_success(r)["lease"])
                made[lease["backend_id"]] = (d.name, parse_ts(lease["expires"]), lease)
        assert len(made) == WAVE
        soon = now_ms() + 300
        assert {u for u, (_, e, _) in made.items() if e > soon} <= tlm_users(srv), \
            "a user of the wave is missing at Redis"
        first = min(e for _, e, _ in made.values())
        last = max(e for _, e, _ in made.values())

        # A dies during the wave, with revocations under way: for its last
        # HOLD_MS its ACL DELUSERs never reach Redis
        sleep_until_ms(first + KILL_AFTER_FIRST_MS - HOLD_MS)
        relay.hold_commands("A", ("ACL", "DELUSER"))
        time.sleep(HOLD_MS / 1000)
        a.stop(signal.SIGKILL)
        t_kill = time.time()
        due_after_kill = {u for u, (who, e, _) in made.items()
                          if who == "A" and e / 1000 > t_kill}
        assert due_after_kill, "A had no lease left to take over"
        claimed_by_a = {w for _, _, words in relay.held_commands()
                        for w in words[2:]} & set(made)
        assert claimed_by_a, "A had no revocation under way when it died"

        # every user of the wave goes (polled at Redis itself)
        def wave_gone():
            return not (tlm_users(srv) & set(made))

        wait_until(wave_gone, timeout=max(1.0, last / 1000 - time.time())
                   + REVOKE_BOUND_S + 2.0, interval=0.05,
                   what="every redis user of the wave to be deleted")
        time.sleep(0.5)     # a late second deletion would show in the log
        deletions = relay.deletions()

        late, early, doubles, problems = [], [], [], []
        lag_after_kill, lag_normal, lag_claimed = [], [], []
        for user, (who, expires, lease) in made.items():
            dels = sorted(deletions.get(user, []))
            assert dels, f"no ACL DELUSER was sent for {user} (made at {who})"
            owners = [o for _, o in dels]
            assert None not in owners, f"a DELUSER from an unknown client: {dels}"
            lag = dels[0][0] - expires / 1000
            if lag > REVOKE_BOUND_S:
                late.append((user, who, round(lag, 3), owners))
            if lag < -CLOCK_SLACK_S:
                early.append((user, who, round(lag, 3), owners))
            if user in due_after_kill:
                lag_after_kill.append(lag)
            elif expires / 1000 <= t_kill < dels[0][0]:
                lag_claimed.append(lag)   # due while A lived, revoked after
            else:
                lag_normal.append(lag)
            by_a = [t for t, o in dels if o == "A"]
            by_survivors = [t for t, o in dels if o != "A"]
            if len(dels) > 1:
                doubles.append((user, owners))
            if len(by_survivors) > 1 or len(by_a) > 1 \
                    or (by_a and by_survivors and by_a[0] > by_survivors[0]) \
                    or any(t > t_kill + CLOCK_SLACK_S for t in by_a):
                problems.append((user, who, [(round(t - expires / 1000, 3), o)
                                             for t, o in dels]))
        print(f"wave: {WAVE} leases made in {created_s:.2f} s, A killed "
              f"{t_kill - first / 1000:.2f} s after the first expiry with "
              f"{len(due_after_kill)} of its leases still due and "
              f"{len(claimed_by_a)} revocations held back; revocation after "
              f"expires: max {max(lag_normal):.3f} s (before A died), max "
              f"{max(lag_after_kill):.3f} s (A's, due after it died), max "
              f"{max(lag_claimed or [0]):.3f} s ({len(lag_claimed)} due before A "
              f"died, revoked after); "
              f"{len(doubles)} users deleted twice")
        assert not early, f"users deleted before their lease expired: {early[:5]}"
        assert not late, (f"{len(late)} users deleted more than {REVOKE_BOUND_S} s "
                          f"after expires (user, creator, lag, by): {late[:8]}")
        assert not problems, (f"users deleted more than once other than after a "
                              f"kill (user, creator, [(s after expires, by)]): "
                              f"{problems[:8]}")
        # the long leases are untouched, and served by the survivors
        for lease in keep:
            assert lease["backend_id"] in tlm_users(srv)
            assert lease["backend_id"] not in deletions
            assert redis_env.works(lease)
        for d in ds[1:]:
            for lease, r in zip(keep, gets(d, [x["id"] for x in keep])):
                assert assert_success(r)["lease"]["value"] == lease["value"]
            h = health_of(d)
            assert h["leases"] == KEEP, h
        assert stored_ids(pg, database) == {x["id"] for x in keep}
    finally:
        relay.close()


# ---------------------------------------------------------------------------
# 4. a create burst, one instance killed in the middle
# ---------------------------------------------------------------------------

class CreateLoad:
    """Threads that create redis leases at one instance over TCP, pipelined
    in windows, until stopped or the connection is cut.  ``acked`` holds
    the acknowledged leases, ``failures`` any failure reply."""

    def __init__(self, d, connections=2, window=8, backend="redis"):
        self.d = d
        self.window = window
        self.backend = backend
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.failures, self.cut = [], [], 0
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self):
        req = {"action": "create", "backend": self.backend, "tags": ["burst"],
               "options": {"ttl": 600000}}
        try:
            with TcpClient(self.d.tcp_port) as c:
                inflight = 0
                while not self.stop.is_set() or inflight:
                    while not self.stop.is_set() and inflight < self.window:
                        c.send(req)
                        inflight += 1
                    r = c.recv(timeout=30)
                    inflight -= 1
                    with self.lock:
                        if r.get("result") == "success":
                            self.acked.append(r["lease"])
                        else:
                            self.failures.append(r)
        except (ConnectionClosed, OSError):
            with self.lock:
                self.cut += 1

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(40)
            assert not t.is_alive(), "a load thread did not finish"


def test_create_burst_with_a_killed_instance(tlmd_factory, pg, database, password_file,
                                             redis_env, tmp_path, request):
    """Creates pipelined at A and B.  0.4 s in, the relay in front of Redis
    keeps back Redis's replies to A, so A's creates under way make their
    users but never hear of it; 0.15 s later A is SIGKILLed, and B's load
    goes on for 0.5 s more.  Every acknowledged lease, made at either, is
    readable at B with its value, and its user exists.  Right after the
    kill some users have no lease (A's unfinished creates, its intent
    records); B reconciles them: within the deadline every tlm_ user at
    Redis belongs to a lease that B serves, every redis lease B lists has
    its user, and each orphan was deleted once.  A started again serves
    every lease.  (Flags --shared-poll-ms and --instance-timeout-ms given
    with their defaults.)"""
    srv = redis_env.srv
    relay = RespLog(srv.port)
    request.addfinalizer(relay.close)
    cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings(port=relay.port,
                                                                   timeout_ms=1000)},
                            **FAST_RETRIES)
    a, b = start_instances(tlmd_factory, 2, storage_of(pg, database), password_file,
                           config=cfg, args=["--shared-poll-ms", "1000",
                                             "--instance-timeout-ms", "3000"])
    for d in (a, b):
        relay.watch(d.name, d)
    load_a = CreateLoad(a, connections=3).start()
    load_b = CreateLoad(b, connections=2).start()
    time.sleep(0.4)
    relay.hold_replies("A")
    time.sleep(0.15)
    a.stop(signal.SIGKILL)
    t_kill = time.monotonic()
    # users without a lease now: A's creates that Redis carried out and A
    # never heard of (and B's creates under way)
    users = sorted(tlm_users(srv))
    orphans = [u for u, r in zip(users, gets(b, [u[len("tlm_"):] for u in users]))
               if r.get("error") == "not_found"]
    time.sleep(0.5)
    load_a.join()
    load_b.join()
    acked = load_a.acked + load_b.acked
    print(f"burst: {len(load_a.acked)} creates acknowledged at A before the kill, "
          f"{len(load_b.acked)} at B; failures {len(load_a.failures + load_b.failures)}")
    assert load_a.acked and load_b.acked, "the burst made nothing at one instance"
    assert load_a.cut, "A's connections were not cut by the kill"
    failures = load_a.failures + load_b.failures
    assert not failures, f"failed creates: {failures[:3]}"

    # every acknowledged lease is at B, as acknowledged
    for lease, r in zip(acked, gets(b, [x["id"] for x in acked])):
        got = assert_success(r)["lease"]
        assert got["value"] == lease["value"] and got["backend_id"] == lease["backend_id"]
    users = tlm_users(srv)
    missing = {x["backend_id"] for x in acked} - users
    assert not missing, f"{len(missing)} users of acknowledged leases are missing"
    for lease in random.Random(7).sample(acked, min(10, len(acked))):
        assert redis_env.works(lease)

    # reconciliation: no user without a lease, no lease without its user
    state = {}

    def settled():
        users = sorted(tlm_users(srv))
        answers = gets(b, [u[len("tlm_"):] for u in users])
        orphans = [u for u, r in zip(users, answers)
                   if r.get("error") == "not_found"]
        odd = [r for r in answers if r.get("result") != "success"
               and r.get("error") != "not_found"]
        assert not odd, f"get at B answered {odd[:3]}"
        listed = {x["backend_id"]
                  for x in b.api("tcp").list_all(page_limit=1000, backend="redis")}
        state.update(users=len(users), orphans=orphans, listed=len(listed),
                     without_user=listed - set(users))
        return not orphans and listed == set(users)

    try:
        wait_until(settled, timeout=RECONCILE_DEADLINE_S, interval=0.5,
                   what="B to reconcile A's unfinished creates")
    except AssertionError as e:
        raise AssertionError(f"{e}: {len(state['orphans'])} users without a lease "
                             f"(e.g. {state['orphans'][:3]}), "
                             f"{len(state['without_user'])} leases without a user; "
                             f"{state['users']} users, {state['listed']} listed") from None
    orphans = set(orphans) - tlm_users(srv)      # not B's creates under way
    print(f"reconciled {time.monotonic() - t_kill:.1f} s after the kill: "
          f"{len(orphans)} users of A's unfinished creates deleted, now "
          f"{state['users']} users, each with a lease "
          f"({state['users'] - len(acked)} of creates never acknowledged)")
    assert orphans, "A died without a create under way at Redis (test premise)"
    time.sleep(1.0)
    assert settled(), f"not settled any more: {state}"
    assert health_of(b)["leases"] == state["users"]
    deletions = relay.deletions()
    for user in orphans:
        assert [o for _, o in deletions.get(user, [])] == ["B"], \
            f"orphan {user} deleted {deletions.get(user)}"
    unexpected = set(deletions) - orphans
    assert not unexpected, f"users deleted that had a lease: {sorted(unexpected)[:5]}"
    # A, started again, serves every lease, its own from before the kill too
    relay.release()
    a.start()
    for lease, r in zip(acked, gets(a, [x["id"] for x in acked])):
        assert assert_success(r)["lease"]["value"] == lease["value"]
    assert health_of(a)["leases"] == health_of(b)["leases"] == state["users"]


# ---------------------------------------------------------------------------
# 5. PostgreSQL down under load
# ---------------------------------------------------------------------------

class TimedLoad:
    """Threads that send one create at a time at one instance (local
    backend, long ttl) and time each answer."""

    def __init__(self, d, connections=2):
        self.d = d
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.replies, self.errors = [], [], []
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self):
        req = {"action": "create", "options": {"ttl": 600000}, "tags": ["load"]}
        try:
            with TcpClient(self.d.tcp_port, timeout=60) as c:
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    r = c.request(req, timeout=60)
                    took = time.monotonic() - t0
                    with self.lock:
                        self.replies.append((r, took))
                        if r.get("result") == "success":
                            self.acked.append(r["lease"])
                    # a load, not a flood: the machine has 2 cores
                    time.sleep(0.005 if r.get("result") == "success" else 0.05)
        except Exception as e:  # reported by the test
            with self.lock:
                self.errors.append(repr(e))

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(70)
            assert not t.is_alive(), "a load thread did not finish"


def test_postgres_outage_under_load(tlmd_factory, postgres_server_factory, redis_env,
                                    tmp_path):
    """Creates keep coming at A and B while PostgreSQL is stopped for a few
    seconds and started again.  Meanwhile every failure is storage_error,
    every answer comes within the documented bound, and health at both is
    degraded (storage failing).  Short redis leases (ttl 2 s) expire during
    the outage: dead at the API, and revoked at Redis soon after PostgreSQL
    is back.  Afterwards every acknowledged lease is readable at both."""
    pg_srv = postgres_server_factory()
    db = pg_srv.create_database("tlm")
    pw = pg_srv.write_password_file(tmp_path / "pw")
    srv = redis_env.srv
    cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings()}, **FAST_RETRIES)
    a, b = start_instances(tlmd_factory, 2, storage_of(pg_srv, db), pw, config=cfg)
    kept = {}
    for d in (a, b):
        for r in pipelined(d, [{"action": "create", "options": {"ttl": 600000},
                                "tags": ["kept"]}] * 20):
            lease = assert_success(r)["lease"]
            kept[lease["id"]] = lease
    loads = [TimedLoad(a).start(), TimedLoad(b).start()]
    time.sleep(0.5)
    short = []
    for d in (a, b):
        short += [assert_success(r)["lease"] for r in pipelined(
            d, [{"action": "create", "backend": "redis", "options": {"ttl": 2000}}] * 10)]
    short_users = {x["backend_id"] for x in short}
    assert short_users <= tlm_users(srv)
    short_expires = max(parse_ts(x["expires"]) for x in short)

    pg_srv.stop()
    t_stop = time.monotonic()
    try:
        for d in (a, b):
            def degraded(d=d):
                h = health_of(d)
                return h if h["status"] == "degraded" \
                    and h.get("storage", {}).get("status") == "failing" else None
            h = wait_until(degraded, timeout=STORAGE_ERROR_BOUND_S, interval=0.1,
                           what=f"health at {d.name} to say degraded")
            assert h["storage"].get("last_error"), h
        # the short leases expire while PostgreSQL is down: dead at the API
        sleep_until_ms(short_expires + 1500)
        for d in (a, b):
            for r in gets(d, [x["id"] for x in short]):
                assert r.get("result") != "success", \
                    f"{d.name} serves a lease after its expires: {r}"
                assert r.get("error") in ("not_found", "storage_error"), r
            assert_failure(d.action("tcp", {"action": "create",
                                            "options": {"ttl": 600000}}),
                           "storage_error")
        outage_s = time.monotonic() - t_stop
    finally:
        pg_srv.start()
    t_back = time.monotonic()

    for d in (a, b):
        wait_until(lambda d=d: health_of(d).get("storage", {}).get("status") == "ok",
                   timeout=30, interval=0.1,
                   what=f"health at {d.name} to show the storage ok again")
    # expiry resumes by itself: the users of the short leases go, and their rows
    wait_until(lambda: not (tlm_users(srv) & short_users),
               timeout=REVOKE_BOUND_S + 10, interval=0.05,
               what="the short leases that expired during the outage to be revoked")
    revoked_after = time.monotonic() - t_back
    wait_until(lambda: not (stored_ids(pg_srv, db) & {x["id"] for x in short}),
               timeout=10, interval=0.1, what="the short leases' rows to be removed")
    time.sleep(0.5)
    for load in loads:
        load.join()

    replies = [x for load in loads for x in load.replies]
    errors = [e for load in loads for e in load.errors]
    assert not errors, errors
    codes = {}
    for r, _ in replies:
        key = r.get("result") if r.get("result") == "success" else r.get("error")
        codes[key] = codes.get(key, 0) + 1
    slowest = max(took for _, took in replies)
    print(f"outage of {outage_s:.1f} s: {len(replies)} creates answered {codes}, "
          f"slowest {slowest:.2f} s; the short leases revoked {revoked_after:.2f} s "
          f"after PostgreSQL was back")
    bad = [r for r, _ in replies if r.get("result") != "success"
           and r.get("error") != "storage_error"]
    assert not bad, f"failures other than storage_error: {bad[:3]}"
    for r, _ in replies:
        if r.get("result") != "success":
            assert_failure(r, "storage_error")
    assert codes.get("storage_error"), "no create met the outage"
    assert slowest <= STORAGE_ERROR_BOUND_S, f"an answer took {slowest:.1f} s"
    for load in loads:
        assert any(r.get("result") == "success" for r, _ in load.replies[-5:]), \
            f"creates at {load.d.name} do not succeed again after the outage"

    # nothing acknowledged is lost, at either instance
    acked = dict(kept)
    for load in loads:
        acked.update({x["id"]: x for x in load.acked})
    for d in (a, b):
        for lease_id, r in zip(acked, gets(d, list(acked))):
            got = assert_success(r)["lease"]
            assert got["value"] == acked[lease_id]["value"]
    assert set(acked) <= stored_ids(pg_srv, db)
    counts = [health_of(d)["leases"] for d in (a, b)]
    assert counts[0] == counts[1] >= len(acked), counts
    # and both serve new leases again, readable at the other
    x = a.api("tcp").create(ttl=600000)
    assert_success(b.api("tcp").get(x["id"]))


# ---------------------------------------------------------------------------
# 6. two instances racing to start on an empty database
# ---------------------------------------------------------------------------

def test_two_instances_start_at_once_on_an_empty_database(tlmd_factory, pg,
                                                          password_file):
    """Three rounds, each on a new, empty database: two instances spawned at
    the same moment both come up; exactly one says it made the database
    (``storage=new:…``), leases made at one are served by the other, and a
    third instance started later finds the schema made."""
    from tlmd_harness import READY_RE
    for round_ in range(3):
        db = pg.create_database(f"tlm_race_{round_}_{time.monotonic_ns() % 100000}")
        storage = storage_of(pg, db)
        ds = start_instances(tlmd_factory, 2, storage, password_file, at_once=True,
                             names=[f"r{round_}a", f"r{round_}b"])
        specs = [READY_RE.match(d.stdout_lines[-1]).group(3) for d in ds]
        assert sorted(s.startswith("new:") for s in specs) == [False, True], \
            f"round {round_}: ready lines say {specs}"
        x = ds[0].api("tcp").create(ttl=600000, tags=["race"])
        y = ds[1].api("http").create(ttl=600000, tags=["race"])
        assert assert_success(ds[1].api("tcp").get(x["id"]))["lease"] == x
        assert assert_success(ds[0].api("http").get(y["id"]))["lease"] == y
        for d in ds:
            assert health_of(d)["leases"] == 2
        third = start_instances(tlmd_factory, 1, storage, password_file,
                                names=[f"r{round_}c"])[0]
        assert not READY_RE.match(third.stdout_lines[-1]).group(3).startswith("new:")
        assert {z["id"] for z in third.api("tcp").list_all(tag="race")} == {x["id"], y["id"]}
        for d in ds + [third]:
            d.kill()


# ---------------------------------------------------------------------------
# 7. a revoke job whose instance dies
# ---------------------------------------------------------------------------

def test_a_dead_instances_revoke_job_is_finished(tlmd_factory, pg, database,
                                                 password_file, influxdb2_fake,
                                                 tmp_path):
    """20 leases tagged doomed (10 made at A, 10 at B) on the InfluxDB 2.x
    fake, which fails every DELETE.  revoke_prefix at A matches all 20;
    ``job`` at B sees the job running; A is SIGKILLed; the fault is
    cleared.  B finishes the job: every doomed authorization is deleted at
    the fake exactly once (one DELETE that succeeded), ``job`` at B says
    done with 20 revoked, and the leases tagged kept, or tagged doomed but
    made after the job began, live on.  (Config keys shared_poll_ms and
    instance_timeout_ms set shorter than their defaults.)"""
    v2 = V2Env(influxdb2_fake, tmp_path / "secrets")
    cfg = write_tlmd_config(tmp_path, v2.config(), shared_poll_ms=500,
                            instance_timeout_ms=2000, **FAST_RETRIES)
    a, b = start_instances(tlmd_factory, 2, storage_of(pg, database), password_file,
                           config=cfg)
    A, B = a.api("tcp"), b.api("http")
    doomed = [api.create(600000, backend="v2", tags=["doomed"])
              for api in (A, B) for _ in range(10)]
    kept = [B.create(600000, backend="v2", tags=["kept"]) for _ in range(5)]
    v2.set_fault("error503", method="DELETE")
    r = assert_success(A.call({"action": "revoke_prefix", "tag": "doomed"}))
    assert r["count"] == 20, f"the job at A matched {r['count']} of 20 leases"
    job_id = r["job_id"]
    job = assert_success(B.call({"action": "job", "job_id": job_id}))["job"]
    assert job["state"] == "running" and job["total"] == 20, job
    later = B.create(600000, backend="v2", tags=["doomed"])
    for lease in doomed:
        assert_failure(B.get(lease["id"]), "not_found")
    wait_until(lambda: any(q["method"] == "DELETE" for q in influxdb2_fake.requests()),
               timeout=10, what="A to try a revocation")
    A.close()
    a.stop(signal.SIGKILL)
    t_kill = time.monotonic()
    assert all(v2.works(lease) for lease in doomed), "a doomed credential is gone already"
    v2.thaw()

    def done():
        j = assert_success(B.call({"action": "job", "job_id": job_id}))["job"]
        return j if j["state"] == "done" else None

    job = wait_until(done, timeout=30, interval=0.1,
                     what="B to finish the job A started")
    print(f"job {job_id} finished at B {time.monotonic() - t_kill:.1f} s after A "
          f"was killed: {job}")
    assert (job["total"], job["revoked"], job["remaining"], job["irrevocable"]) \
        == (20, 20, 0, 0), job
    ok_deletes = {}
    for q in influxdb2_fake.requests():
        if q["method"] == "DELETE" and q["status"] in (204, 404):
            auth_id = q["path"].split("?")[0].rsplit("/", 1)[-1]
            ok_deletes[auth_id] = ok_deletes.get(auth_id, 0) + 1
    for lease in doomed:
        assert not v2.listed(lease) and not v2.works(lease)
        assert ok_deletes.get(lease["backend_id"]) == 1, \
            f"{ok_deletes.get(lease['backend_id'])} DELETEs of {lease['backend_id']}"
        assert_failure(B.get(lease["id"]), "not_found")
    for lease in kept + [later]:
        assert v2.works(lease)
        assert assert_success(B.get(lease["id"]))["lease"]["value"] == lease["value"]
    assert health_of(b)["leases"] == len(kept) + 1
    B.close()


# ---------------------------------------------------------------------------
# 8. an instance stopped with SIGTERM hands its leases over
# ---------------------------------------------------------------------------

def test_a_stopped_instance_hands_its_leases_over(tlmd_factory, pg, database,
                                                  password_file, redis_env, tmp_path,
                                                  request):
    """30 redis_acl leases (ttl 1 to 2.5 s) made at A; A is stopped with
    SIGTERM right away and exits 0.  B revokes every one of them, once
    (the relay's count of ACL DELUSER), never before its expires and at
    most 5 s after it."""
    srv = redis_env.srv
    relay = RespLog(srv.port)
    request.addfinalizer(relay.close)
    cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings(port=relay.port)},
                            **FAST_RETRIES)
    a, b = start_instances(tlmd_factory, 2, storage_of(pg, database), password_file,
                           config=cfg)
    for d in (a, b):
        relay.watch(d.name, d)
    rng = random.Random(8)
    made = {}
    for r in pipelined(a, [{"action": "create", "backend": "redis",
                            "options": {"ttl": rng.randint(1000, 2500)}}
                           for _ in range(30)], window=8):
        lease = assert_success(r)["lease"]
        made[lease["backend_id"]] = parse_ts(lease["expires"])
    assert a.stop() == 0, "A did not exit 0 on SIGTERM"
    t_stop = time.time()
    wait_until(lambda: not (tlm_users(srv) & set(made)),
               timeout=max(made.values()) / 1000 - time.time() + REVOKE_BOUND_S + 2,
               interval=0.05, what="every user of A's leases to be deleted")
    time.sleep(0.3)
    deletions = relay.deletions()
    lags = []
    for user, expires in made.items():
        dels = deletions.get(user, [])
        assert len(dels) == 1, f"{user}: deleted {len(dels)} times: {dels}"
        t, owner = dels[0]
        assert owner == ("A" if t <= t_stop else "B"), dels
        lag = t - expires / 1000
        assert -CLOCK_SLACK_S <= lag <= REVOKE_BOUND_S, \
            f"{user} deleted {lag:.3f} s after its expires"
        lags.append(lag)
    print(f"after SIGTERM at A: {sum(1 for u in made if deletions[u][0][1] == 'B')} of "
          f"{len(made)} leases revoked by B, at most {max(lags):.3f} s after expires")
    assert health_of(b)["leases"] == 0
    assert stored_ids(pg, database) == set()


# ---------------------------------------------------------------------------
# 9. a renew or exchange at one instance racing the expiry at another
# ---------------------------------------------------------------------------

RACE_LEASES = 40


def _at(epoch_ms, fn):
    """fn() at the wall-clock moment epoch_ms, in a thread; returns the
    thread and a one-element list for fn's result."""
    out = [None]

    def run():
        sleep_until_ms(epoch_ms)
        try:
            out[0] = fn()
        except Exception as e:  # reported by the caller
            out[0] = e

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_updates_racing_the_expiry_at_another_instance(tlmd_factory, pg, database,
                                                       password_file, redis_env,
                                                       tmp_path, request):
    """40 renewable redis_acl leases and 40 local ones (ttl 1 s) made at A,
    which times their expiry.  Within 15 ms either side of each one's
    expires, B gets a renew (redis) or an exchange (local) of it.  What B
    was told holds: a lease B renewed is live at C with the new term, its
    user was never deleted and still works; a value B handed out works at
    C.  A lease whose update B refused (not_found, invalid_token) is dead
    everywhere, and its user goes within the bound."""
    srv = redis_env.srv
    relay = RespLog(srv.port)
    request.addfinalizer(relay.close)
    cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings(port=relay.port)},
                            **FAST_RETRIES)
    a, b, c = start_instances(tlmd_factory, 3, storage_of(pg, database), password_file,
                              config=cfg)
    for d in (a, b, c):
        relay.watch(d.name, d)
    rng = random.Random(9)
    redis_leases = [assert_success(r)["lease"] for r in pipelined(
        a, [{"action": "create", "backend": "redis", "renewable": True,
             "options": {"ttl": 1000}}] * RACE_LEASES, window=8)]
    local_leases = [assert_success(r)["lease"] for r in pipelined(
        a, [{"action": "create", "options": {"ttl": 1000}}] * RACE_LEASES)]
    conns = [TcpClient(b.tcp_port) for _ in range(2 * RACE_LEASES)]
    request.addfinalizer(lambda: [x.close() for x in conns])
    races = []
    for i, lease in enumerate(redis_leases + local_leases):
        when = parse_ts(lease["expires"]) + rng.randint(-15, 15)
        if lease["backend"] == "redis":
            req = {"action": "renew", "token_id": lease["id"], "ttl": 60000}
        else:
            req = {"action": "exchange", "token": lease["value"]}
        races.append((lease, when) + _at(when, lambda c_=conns[i], r_=req: c_.request(r_)))
    for _, _, t, _ in races:
        t.join(30)
    won, lost = [], []
    for lease, when, _, out in races:
        r = out[0]
        assert not isinstance(r, Exception), r
        if r.get("result") == "success":
            won.append((lease, r["lease"], when))
        else:
            assert_failure(r, "not_found" if lease["backend"] == "redis"
                           else "invalid_token")
            lost.append((lease, when))
    print(f"racing the expiry: {len(won)} updates won, {len(lost)} lost")
    deadline = max(when for _, when in lost) / 1000 + REVOKE_BOUND_S if lost else 0
    lost_users = {x["backend_id"] for x, _ in lost if x["backend"] == "redis"}
    wait_until(lambda: not (tlm_users(srv) & lost_users),
               timeout=max(1.0, deadline - time.time() + 1.0), interval=0.05,
               what="the users of leases whose renew lost to be deleted")
    time.sleep(0.5)
    deletions = relay.deletions()
    for old, new, when in won:
        got = assert_success(c.api("tcp").get(old["id"]))["lease"]
        assert got["value"] == new["value"] and got["expires"] == new["expires"], \
            f"C shows {got} after B acknowledged {new}"
        if old["backend"] == "redis":
            assert old["backend_id"] not in deletions, \
                f"the user of a lease B renewed was deleted: {deletions[old['backend_id']]}"
            assert redis_env.works(new)
        else:
            assert_success(c.api("tcp").call({"action": "exchange",
                                              "token": new["value"]}))
    for lease, _ in lost:
        assert_failure(c.api("tcp").get(lease["id"]), "not_found")
        if lease["backend"] == "redis":
            assert len(deletions.get(lease["backend_id"], [])) == 1


# ---------------------------------------------------------------------------
# 10. an instance killed while PostgreSQL is down
# ---------------------------------------------------------------------------

def test_an_instance_killed_during_a_postgres_outage(tlmd_factory,
                                                     postgres_server_factory,
                                                     redis_env, tmp_path):
    """B made 10 short redis_acl leases (ttl 2 s) and 10 long ones; then
    PostgreSQL stops, B is SIGKILLed, the short leases expire, PostgreSQL
    starts again.  A alone is left: it revokes B's short leases (each user
    deleted at Redis, the rows gone) and serves B's long ones."""
    pg_srv = postgres_server_factory()
    db = pg_srv.create_database("tlm")
    pw = pg_srv.write_password_file(tmp_path / "pw")
    srv = redis_env.srv
    cfg = write_tlmd_config(tmp_path, {"redis": redis_env.settings()}, **FAST_RETRIES)
    a, b = start_instances(tlmd_factory, 2, storage_of(pg_srv, db), pw, config=cfg)
    short = [assert_success(r)["lease"] for r in pipelined(
        b, [{"action": "create", "backend": "redis", "options": {"ttl": 2000}}] * 10)]
    long = [assert_success(r)["lease"] for r in pipelined(
        b, [{"action": "create", "backend": "redis", "options": {"ttl": 600000}}] * 10)]
    pg_srv.stop()
    try:
        b.stop(signal.SIGKILL)
        sleep_until_ms(max(parse_ts(x["expires"]) for x in short) + 500)
    finally:
        pg_srv.start()
    t_back = time.monotonic()
    short_users = {x["backend_id"] for x in short}
    wait_until(lambda: not (tlm_users(srv) & short_users), timeout=30, interval=0.05,
               what="A to revoke the short leases of B, dead since the outage")
    revoked_s = time.monotonic() - t_back
    wait_until(lambda: stored_ids(pg_srv, db) == {x["id"] for x in long}, timeout=10,
               interval=0.1, what="the short leases' rows to be removed")
    print(f"B's short leases revoked by A {revoked_s:.2f} s after PostgreSQL was back")
    for lease, r in zip(long, gets(a, [x["id"] for x in long])):
        assert assert_success(r)["lease"]["value"] == lease["value"]
        assert lease["backend_id"] in tlm_users(srv)
    assert health_of(a)["leases"] == len(long)


# ---------------------------------------------------------------------------
# 11. a revoke job right after a create at another instance
# ---------------------------------------------------------------------------

def test_a_job_matches_every_lease_acknowledged_before_it(tlmd_factory, pg, database,
                                                          password_file):
    """Four instances; for each ordered pair (X, Y), 20 rounds: a lease made
    at X, and as soon as that is acknowledged a revoke_prefix for its tag
    at Y, then ``job`` at X.  The job must match the lease ("every live
    lease as of the moment it starts": the create was acknowledged before
    the job was asked for) and the lease must be dead; ``job`` at X must
    show the job as it was stored when Y acknowledged it (its total).
    (Each instance's clock trails the wall clock by its own fraction of a
    millisecond, so a job's start time compared with the issue times other
    instances wrote would miss leases: hence the many pairs.)"""
    ds = start_instances(tlmd_factory, 4, storage_of(pg, database), password_file)
    apis = {d.name: d.api("tcp") for d in ds}
    missed, views, rounds = [], [], 0
    for x in apis:
        for y in apis:
            if x == y:
                continue
            X, Y = apis[x], apis[y]
            for round_ in range(20):
                rounds += 1
                tag = f"{x}{y}{round_}"
                lease = X.create(600000, tags=[tag])
                r = assert_success(Y.call({"action": "revoke_prefix", "tag": tag}))
                job = assert_success(X.call({"action": "job", "job_id": r["job_id"]}))["job"]
                if r["count"] != 1:
                    missed.append((f"made at {x}, job at {y}", lease["issued"],
                                   r["job"]["created"], X.get(lease["id"]).get("result")))
                if job["total"] != r["count"]:
                    views.append((f"job at {y}, asked at {x}", r["count"],
                                  {k: job[k] for k in ("state", "total", "remaining")}))
    print(f"jobs that missed a lease acknowledged before them: {len(missed)} of "
          f"{rounds}; job views with another total than the job's reply: "
          f"{len(views)} of {rounds}")
    problems = []
    if missed:
        problems.append(f"{len(missed)} times revoke_prefix did not match a lease "
                        "acknowledged by another instance just before (where, lease "
                        f"issued, job created, get of the lease afterwards): {missed[:4]}")
    if views:
        problems.append(f"{len(views)} times job at another instance, right after "
                        "revoke_prefix was acknowledged, showed another total (where, "
                        f"count, job there): {views[:4]}")
    assert not problems, "\n".join(problems)
    for api in apis.values():
        api.close()
