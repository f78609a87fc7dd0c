"""Crash test: a mixed load of create, renew, exchange and revoke against the
real tlmd (SQLite storage; backends ``local`` and ``redis_acl`` against a
real redis-server), SIGKILLed at random moments and restarted on the same
SQLite file, with the survivors checked against what the clients were told
after every restart.

One round ("epoch"):

1. start tlmd (same config, same SQLite file) and wait for its ready line;
2. check (no load running, see below);
3. WORKERS client threads, each on its own TCP connection, send pipelined
   batches of mixed requests;
4. KILL_DELAY_MS (random, 50-400 ms) after the load began, SIGKILL.

The kill delay counts from the moment the load starts, which is right after
the checks of step 2: those need a quiet daemon (a concurrent request could
change what they look at).

The clients record only what was acknowledged.  A request whose reply never
came (the kill cut it) is *uncertain*: a create may or may not have made a
lease (check 3 looks for its token at the backend); a renew or exchange may
or may not have moved ``expires`` (and swapped the value); a revoke may or
may not have happened.  The next ``get`` resolves each uncertainty: what tlmd
answers must be one of the possible outcomes.

Checks after every restart:

1. Every acknowledged create still exists (``get`` succeeds with the same
   value, for exchanged leases the latest acknowledged value), unless its
   ``expires`` has passed or a revoke of it was acknowledged.
2. Every acknowledged revoke stays gone (``get`` -> not_found), and so does
   every lease once seen gone.
3. No token is valid at the backend without a lease: once the restart has
   settled (polled until SETTLE_S after the ready line: start-up reconciles
   the intents of interrupted creates and revokes expired leases), every
   ``tlm_*`` user in ``ACL USERS`` is the user of a lease that ``get`` still
   finds.  The credential of every dead redis lease is refused by ``AUTH``.
   Leases that tlmd holds although their create was never acknowledged are
   found this way and checked from then on too.
4. No lease is valid past its expiry: ``get`` answers not_found from
   ``expires`` on; a redis user is gone within EXPIRED_CRED_GRACE_MS (2 s) of
   ``expires`` (of the restart, for a lease that expired while tlmd was
   down); an expired or exchanged-away local token is ``invalid_token``.

After the last kill, tlmd runs a final load without a kill and is then
watched until every lease has expired: each redis user must disappear within
2 s of its ``expires`` (strict: tlmd runs throughout), and at the end no
``tlm_*`` user and no live lease is left.

The load: creates on both backends (ttl 1-4 s, redis leases mostly
renewable), renews (both backends), exchanges (local only: the new value
replaces the old one, which must be dead) and revokes, each lease acted on
by one client at a time.  A share of the leases is left alone until their
expiry and then renewed, exchanged or revoked right at it, racing tlmd's own
expiry.  ``test_crash_racing_pairs`` adds pairs of requests for one lease
that race inside tlmd: a renew (or exchange) and right behind it a revoke of
the same lease; and (issue 9) an exchange or renew followed 0-3 ms later (a
second write on the connection, so it meets the first one's storage commit)
by a renew of the same lease.  Their replies must say what was stored: the
renew of an exchange+renew pair has the old value (applied first; the
exchange then restarts the renewed term) or the new one (applied last), and
a value once exchanged away is refused after every later restart.

The random choices (operations, ttls, kill delays) come from a seed printed
in the output, TLM_CRASH_SEED overrides it (thread timing still varies from
run to run).  TLM_CRASH_KILLS / TLM_CRASH_RACING_KILLS override the number
of kills (24 / 12); TLM_CRASH_DEBUG=1 prints each settle poll (run pytest
with -s).
"""

import json
import os
import random
import signal
import sys
import threading
import time

from backends_harness import RedisEnv
from servers.redis import RedisReplyError, encode_command
from tlmd_harness import ConnectionClosed, TcpClient, now_ms, parse_ts

SEED = int(os.environ.get("TLM_CRASH_SEED", "20261123"))
KILLS = int(os.environ.get("TLM_CRASH_KILLS", "24"))
RACING_KILLS = int(os.environ.get("TLM_CRASH_RACING_KILLS", "12"))
WORKERS = 4                    # client threads, one TCP connection each
BATCH = 16                     # pipelined requests per round trip
KILL_DELAY_MS = (50, 400)      # load time before the SIGKILL
TTL_MS = (1000, 4000)          # create / renew ttls: expiries happen during the run
MAX_OWNED = 250                # live leases per worker before it stops creating
OPS = ["create_local", "create_redis", "renew", "exchange", "revoke",
       "renew+revoke", "exchange+revoke", "exchange+renew", "renew+renew"]
#: the mixed load: no two requests for one lease in flight at once
MIX = [24, 24, 22, 16, 14, 0, 0, 0, 0]
#: with pairs that race each other inside tlmd: renew or exchange, then at
#: once revoke of the same lease; exchange or renew, then a bit later renew
RACING_MIX = [20, 20, 12, 8, 6, 14, 8, 8, 6]
#: the second request of an update pair goes out this long after the batch
LATE_GAP_MS = (0.0, 3.0)
#: a renew / exchange / revoke goes, if there is one, to a lease that
#: expires within this many ms of the request (racing its expiry) ...
EXPIRY_RACE_MS = 25
#: ... and this share of new leases is left alone until then
RESERVED_SHARE = 0.3
#: tlmd's clock may trail the wall clock by under a millisecond; timestamps
#: are milliseconds.  Time comparisons allow this much.
SLACK_MS = 15
#: a redis credential must be refused this long after its lease's expiry
EXPIRED_CRED_GRACE_MS = 2000
#: poll for the restart to settle (no orphaned redis user) this long
SETTLE_S = 5.0
#: final round: load without a kill, then watch every lease expire
FINAL_LOAD_S = 1.0
GET_CHUNK = 400
IO_TIMEOUT_S = 10.0
DEBUG = bool(os.environ.get("TLM_CRASH_DEBUG"))


# ---------------------------------------------------------------------------
# the model: what the clients were told
# ---------------------------------------------------------------------------

class Lease:
    """One lease as the clients know it.

    ``exp_lo``/``exp_hi`` bound its ``expires`` (equal unless a renew or
    exchange is uncertain).  ``revoked_at`` / ``gone_seen`` are set once it
    is known gone (acknowledged revoke / a not_found or invalid_token seen);
    from then on it must stay gone."""

    def __init__(self, lease, owner, discovered=False):
        self.id = lease["id"]
        self.backend = lease["backend"]
        self.user = lease["backend_id"]
        self.renewable = lease["renewable"]
        self.value = lease["value"]
        self.ttl = lease["ttl"]
        self.exp_lo = self.exp_hi = parse_ts(lease["expires"])
        self.owner = owner
        self.discovered = discovered
        self.reserved = False           # the owner waits for its expiry to act
        self.old_values = []            # exchanged away (acknowledged): dead
        self.paired_exchange = None     # (ttl before, reply) of an exchange+renew
        self.probed_values = set()      # local values already probed as dead
        self.value_uncertain = False    # an exchange without reply
        self.pending = []               # uncertain renews / exchanges
        self.maybe_revoked = False      # a revoke without reply
        self.cred_maybe_gone = False    # a revoke without reply, lease still live
        self.revoked_at = None          # wall ms of the acknowledged revoke
        self.gone_seen = None           # wall ms of the first not_found seen
        self.auth_probed = False        # dead redis credential probed once
        self.history = []

    def log(self, msg):
        self.history.append(f"{now_ms()} {msg}")
        if len(self.history) > 40:
            del self.history[1:2]

    def dead(self, now):
        return (self.revoked_at is not None or self.gone_seen is not None
                or self.exp_hi <= now)

    def dead_base(self):
        """Latest moment the lease can have died (wall ms)."""
        cands = [self.exp_hi]
        if self.revoked_at is not None:
            cands.append(self.revoked_at)
        if self.gone_seen is not None:
            cands.append(self.gone_seen)
        return min(cands)

    def describe(self):
        state = (f"id={self.id} backend={self.backend} exp=[{self.exp_lo},{self.exp_hi}]"
                 f" revoked_at={self.revoked_at} gone_seen={self.gone_seen}"
                 f" maybe_revoked={self.maybe_revoked} value_uncertain={self.value_uncertain}"
                 f" pending={self.pending} discovered={self.discovered}")
        return state + "\n      " + "\n      ".join(self.history)


class Model:
    def __init__(self):
        self.lock = threading.Lock()
        self.leases = {}
        self.errors = []
        self.uncertain = []          # leases with an op cut by the current kill
        self.epoch = 0
        self.c = dict(kills=0, creates_local=0, creates_redis=0, renews=0,
                      exchanges=0, revokes=0, renews_before_exchange=0, late_not_found=0, unknown_creates=0,
                      unknown_ops=0, discovered=0, gets=0, auth_dead=0,
                      auth_live=0, exchange_dead=0, orphans=0, acl_polls=0, race_lost=0,
                      max_settle_ms=0, max_expiry_lag_ms=0)

    def count(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def error(self, msg, lease=None):
        text = f"[epoch {self.epoch}] {msg}"
        if lease is not None:
            text += "\n    lease " + lease.describe()
        with self.lock:
            self.errors.append(text)

    def add(self, lease):
        with self.lock:
            self.leases[lease.id] = lease

    def mark_uncertain(self, lease):
        with self.lock:
            self.uncertain.append(lease)


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------

class Worker:
    """A client thread: pipelined batches on one TCP connection.  It owns
    the leases it created and is the only one to act on them, one request
    per lease per batch."""

    def __init__(self, idx, model, weights):
        self.idx = idx
        self.model = model
        self.weights = weights
        self.owned = []
        self.rng = None

    def run(self, port, rng, stop, killed):
        m = self.model
        self.rng = rng
        try:
            conn = TcpClient(port, timeout=IO_TIMEOUT_S)
        except OSError as e:
            if not killed.is_set():
                m.error(f"worker {self.idx}: cannot connect: {e!r}")
            return
        try:
            while not stop.is_set():
                batch = self.build(rng)
                t_send = now_ms()
                try:
                    early = [item[2] for item in batch if not item[4]]
                    late = [item[2] for item in batch if item[4]]
                    conn.send_many(early)
                    if late:
                        time.sleep(rng.uniform(*LATE_GAP_MS) / 1000.0)
                        conn.send_many(late)
                except OSError:
                    self.cut(batch, t_send, killed, "send")
                    return
                for i, item in enumerate(batch):
                    try:
                        reply = conn.recv(timeout=IO_TIMEOUT_S)
                    except (OSError, ConnectionClosed) as e:
                        self.cut(batch[i:], t_send, killed, repr(e))
                        return
                    self.apply(item, reply, t_send, now_ms())
        except Exception as e:   # a bug in the test itself: never silent
            m.error(f"worker {self.idx} crashed: {e!r}")
        finally:
            conn.close()

    def build(self, rng):
        """A batch of (op, lease, request, partner, late).  Each lease gets
        at most one request per batch, except the racing pairs: renew or
        exchange, then revoke of the same lease, pipelined back to back; and
        exchange or renew, then renew (``late``: sent after a short gap, so
        the batch puts the late requests last).  ``partner`` is the kind of
        the pair's other request (None: no pair)."""
        now = now_ms()
        # leases that may still be live, and some just expired (their
        # requests race the expiry)
        self.owned = [l for l in self.owned if l.revoked_at is None
                      and l.gone_seen is None and l.exp_hi > now - 100]
        pool = list(self.owned)
        rng.shuffle(pool)

        def take(pred):
            idx = [j for j, cand in enumerate(pool) if pred(cand)]
            racing = [j for j in idx if abs(pool[j].exp_hi - now) <= EXPIRY_RACE_MS]
            if racing:
                return pool.pop(racing[0])
            idx = [j for j in idx if not pool[j].reserved]
            return pool.pop(idx[0]) if idx else None

        batch = []
        for _ in range(BATCH):
            op = rng.choices(OPS, self.weights)[0]
            lease = None
            if op in ("renew", "renew+revoke", "renew+renew"):
                lease = take(lambda l: l.renewable)
            elif op == "exchange+renew":
                lease = take(lambda l: l.backend == "local" and l.renewable)
            elif op in ("exchange", "exchange+revoke"):
                lease = take(lambda l: l.backend == "local")
            elif op == "revoke":
                lease = take(lambda l: True)
            elif len(self.owned) >= MAX_OWNED:
                continue
            if op not in ("create_local", "create_redis") and lease is None:
                op = rng.choice(["create_local", "create_redis"])
            ttl = rng.randint(*TTL_MS)
            if op == "create_local":
                batch.append((op, None, {"action": "create", "backend": "local",
                                         "options": {"ttl": ttl},
                                         "renewable": rng.random() < 0.7,
                                         "meta": {"w": self.idx}}, None, False))
            elif op == "create_redis":
                batch.append((op, None, {"action": "create", "backend": "redis",
                                         "options": {"ttl": ttl},
                                         "renewable": rng.random() < 0.9}, None, False))
            else:
                first, _, second = op.partition("+")
                if first == "renew":
                    req = {"action": "renew", "token_id": lease.id, "ttl": ttl}
                elif first == "exchange":
                    req = {"action": "exchange", "token": lease.value, "meta": {}}
                else:
                    req = {"action": "revoke", "token_id": lease.id}
                batch.append((first, lease, req, second or None, False))
                if second == "revoke":
                    batch.append(("revoke", lease, {"action": "revoke",
                                                    "token_id": lease.id}, first, False))
                elif second == "renew":
                    lease.paired_exchange = None
                    # another ttl than the first, so the replies tell them apart
                    other = rng.choice([t for t in range(TTL_MS[0], TTL_MS[1] + 1, 500)
                                        if t != ttl])
                    batch.append(("renew", lease, {"action": "renew", "token_id": lease.id,
                                                   "ttl": other}, first, True))
        return [b for b in batch if not b[4]] + [b for b in batch if b[4]]

    def cut(self, items, t_send, killed, how):
        """Requests whose replies the kill cut off: uncertain."""
        m = self.model
        if not killed.is_set():
            m.error(f"worker {self.idx}: connection lost without a kill ({how}) "
                    f"with {len(items)} requests unanswered")
        for op, lease, req, partner, late in items:
            if op.startswith("create"):
                m.count("unknown_creates")
                continue
            m.count("unknown_ops")
            if op == "renew":
                lease.pending.append(("renew", t_send, req["ttl"]))
            elif op == "exchange":
                lease.pending.append(("exchange", t_send, lease.ttl))
                lease.value_uncertain = True
            else:
                lease.maybe_revoked = True
            lease.log(f"{op} sent at {t_send}: no reply (kill)")
            m.mark_uncertain(lease)

    def apply(self, item, reply, t_send, t_recv):
        op, lease, req, partner, late_sent = item
        m = self.model
        ok = reply.get("result") == "success"
        err = reply.get("error")
        if op.startswith("create"):
            if not ok:
                m.error(f"{req['backend']} create failed: {reply}")
                return
            got = reply["lease"]
            ttl = req["options"]["ttl"]
            issued, expires = parse_ts(got["issued"]), parse_ts(got["expires"])
            new = Lease(got, self.idx)
            new.reserved = self.rng.random() < RESERVED_SHARE
            new.log(f"create ack ttl={ttl} issued={issued} expires={expires} "
                    f"(sent {t_send}, answered {t_recv})")
            m.add(new)
            if (got["backend"] != req["backend"] or got["ttl"] != ttl
                    or expires - issued != ttl
                    or not t_send - SLACK_MS <= issued <= t_recv + SLACK_MS):
                m.error(f"create reply does not match the request {req}: {got}", new)
            self.owned.append(new)
            m.count("creates_" + req["backend"])
            return
        late = lease.exp_lo - SLACK_MS <= t_recv
        if op in ("renew", "exchange"):
            if ok:
                got = reply["lease"]
                expires = parse_ts(got["expires"])
                ttl = req["ttl"] if op == "renew" else lease.ttl
                if op == "exchange" and partner == "renew":
                    # restarts the renewed term if the renew came first;
                    # the renew's reply tells (see apply_paired_renew)
                    ttl = got["ttl"]
                lease.log(f"{op} ack expires={expires} ttl={got['ttl']} "
                          f"(sent {t_send}, answered {t_recv})")
                if (got["id"] != lease.id or got["ttl"] != ttl
                        or not t_send + ttl - SLACK_MS <= expires <= t_recv + ttl + SLACK_MS):
                    m.error(f"{op} reply does not match: ttl {ttl} sent at {t_send}, "
                            f"answered at {t_recv}: {got}", lease)
                if t_send >= lease.exp_hi + SLACK_MS:
                    m.error(f"{op} succeeded on a lease that had expired before it "
                            f"was sent", lease)
                if op == "exchange":
                    if got["value"] == lease.value:
                        m.error("exchange returned the same value", lease)
                    lease.paired_exchange = (lease.ttl, got) if partner == "renew" else None
                    lease.old_values.append(lease.value)
                    lease.value = got["value"]
                    m.count("exchanges")
                elif partner == "exchange":
                    self.apply_paired_renew(lease, req, got)
                    return
                else:
                    if got["value"] != lease.value:
                        m.error("renew changed the value", lease)
                    m.count("renews")
                    if partner == "renew" and late_sent and lease.backend != "local":
                        # a worker pool may answer the two renews in either
                        # order: the later answered one set the term
                        lease.ttl = got["ttl"]
                        lease.exp_lo = min(lease.exp_lo, expires)
                        lease.exp_hi = max(lease.exp_hi, expires)
                        return
                lease.ttl = got["ttl"]
                lease.exp_lo = lease.exp_hi = expires
                return
            expected = "not_found" if op == "renew" else "invalid_token"
            lease.log(f"{op} {'ttl=%d ' % req['ttl'] if op == 'renew' else ''}answered "
                      f"{err} (sent {t_send}, answered {t_recv})")
            if err == expected and partner == "revoke":
                # the revoke right behind it may have won; its own answer
                # tells what became of the lease
                m.count("race_lost")
                return
            if err == expected and late:
                lease.gone_seen = t_recv
                lease.exp_hi = min(lease.exp_hi, t_recv)
                m.count("late_not_found")
                return
            m.error(f"{op} of a live lease answered {reply}", lease)
            return
        # revoke
        if ok:
            lease.revoked_at = t_recv
            lease.log(f"revoke ack (sent {t_send}, answered {t_recv})")
            m.count("revokes")
            return
        lease.log(f"revoke answered {err} (sent {t_send}, answered {t_recv})")
        if err == "not_found" and late:
            lease.gone_seen = t_recv
            lease.exp_hi = min(lease.exp_hi, t_recv)
            m.count("late_not_found")
            return
        m.error(f"revoke of a live lease answered {reply}", lease)

    def apply_paired_renew(self, lease, req, got):
        """The renew of an exchange+renew pair, answered after the exchange:
        applied after the swap it has the new value and sets the term;
        applied before, it has the old one, and the exchange restarted its
        term.  Either way its reply must say what was stored then."""
        m = self.model
        m.count("renews")
        pair, lease.paired_exchange = lease.paired_exchange, None
        expires = parse_ts(got["expires"])
        if pair is None:             # the exchange failed or was not answered
            if got["value"] != lease.value:
                m.error("renew changed the value", lease)
            lease.ttl = got["ttl"]
            lease.exp_lo = lease.exp_hi = expires
            return
        ttl_before, swapped = pair
        if got["value"] == lease.value:
            if swapped["ttl"] != ttl_before:
                m.error(f"an exchange applied before a renew changed the term: "
                        f"{swapped}", lease)
            lease.ttl = got["ttl"]
            lease.exp_lo = lease.exp_hi = expires
        elif got["value"] == lease.old_values[-1]:
            m.count("renews_before_exchange")
            if swapped["ttl"] != req["ttl"]:
                m.error(f"an exchange applied after a renew did not restart the "
                        f"renewed term {req['ttl']}: {swapped}", lease)
        else:
            m.error(f"the renew of an exchanged lease answered another value: {got}",
                    lease)


# ---------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------

def tlm_pipeline(port, reqs, chunk=GET_CHUNK):
    """Send requests in pipelined chunks; returns [(reply, t0, t1)] where
    t0..t1 bounds the moment tlmd handled each request."""
    out = []
    with TcpClient(port, timeout=IO_TIMEOUT_S) as c:
        for i in range(0, len(reqs), chunk):
            part = reqs[i:i + chunk]
            t0 = now_ms()
            c.send_many(part)
            replies = c.recv_many(len(part), timeout=30)
            t1 = now_ms()
            out += [(r, t0, t1) for r in replies]
    return out


def redis_auth_many(srv, creds):
    """AUTH user password for each (user, password), pipelined on one
    connection.  Returns [True (accepted) | False (WRONGPASS)]."""
    verdicts = []
    if not creds:
        return verdicts
    conn = srv.connect(auth=False, timeout=IO_TIMEOUT_S)
    try:
        conn.sock.sendall(b"".join(encode_command(["AUTH", u, p]) for u, p in creds))
        for _ in creds:
            r = conn._read()
            if isinstance(r, RedisReplyError):
                assert r.code == "WRONGPASS", f"unexpected AUTH answer: {r}"
                verdicts.append(False)
            else:
                assert r == "OK", f"unexpected AUTH answer: {r!r}"
                verdicts.append(True)
    except ConnectionError:
        # Redis drops the connections of a user it deletes, also ours if the
        # last AUTH that worked was that user's: the rest one by one
        verdicts += [srv.can_auth(u, p) for u, p in creds[len(verdicts):]]
    finally:
        conn.close()
    return verdicts


def split_cred(value):
    user, _, password = value.partition(":")
    return user, password


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

class Checker:
    def __init__(self, model, srv, daemon):
        self.m = model
        self.srv = srv
        self.d = daemon
        self.ready_ms = None
        self.settled_at = None   # the ACL USERS snapshot that showed no orphan

    # -- 1, 2, 4 (API side): get every lease the clients know ----------------
    def check_gets(self):
        m = self.m
        leases = list(m.leases.values())
        answers = tlm_pipeline(self.d.tcp_port,
                               [{"action": "get", "token_id": l.id} for l in leases])
        m.count("gets", len(leases))
        for l, (r, t0, t1) in zip(leases, answers):
            self.resolve_get(l, r, t0, t1)

    def resolve_get(self, l, r, t0, t1):
        m = self.m
        if r.get("result") == "success":
            got = r["lease"]
            expires = parse_ts(got["expires"])
            l.log(f"get: live, expires={expires} (asked {t0}..{t1})")
            if l.revoked_at is not None:
                m.error("a lease whose revoke was acknowledged is live again", l)
            elif l.gone_seen is not None:
                m.error("a lease seen gone (not_found/invalid_token) is live again", l)
            elif t0 >= l.exp_hi + SLACK_MS:
                m.error(f"get answered a lease {t0 - l.exp_hi} ms past its expiry", l)
            elif not l.exp_lo - SLACK_MS <= expires <= l.exp_hi + SLACK_MS:
                m.error(f"expires {expires} is none of the possible ones", l)
            if got["value"] != l.value:
                if not l.value_uncertain or got["value"] in l.old_values:
                    m.error("get shows another value than the last acknowledged one", l)
                l.old_values.append(l.value)
                l.value = got["value"]
            if got["backend_id"] != l.user or got["backend"] != l.backend:
                m.error(f"get shows another backend/backend_id: {got}", l)
            if l.maybe_revoked:
                l.cred_maybe_gone = True
            l.exp_lo = l.exp_hi = expires
            l.ttl = got["ttl"]
            l.pending, l.value_uncertain, l.maybe_revoked = [], False, False
            return
        if r.get("error") != "not_found":
            m.error(f"get answered {r}", l)
            return
        if l.revoked_at is None and l.gone_seen is None:
            if not l.maybe_revoked and t1 < l.exp_lo - SLACK_MS:
                m.error(f"an acknowledged lease is gone {l.exp_lo - t1} ms before "
                        f"its expiry (get: not_found at {t0}..{t1})", l)
            l.log(f"get: not_found (asked {t0}..{t1})")
            l.gone_seen = t1
            l.exp_hi = min(l.exp_hi, t1)
            l.exp_lo = min(l.exp_lo, l.exp_hi)

    # -- 3 and 4 (backend side): settle, no orphans, dead users gone in time --
    def acl_snapshot(self):
        t = now_ms()
        users = [u for u in self.srv.acl_users() if u.startswith("tlm_")]
        self.m.count("acl_polls")
        return t, users

    def check_backend(self, deadline_s=SETTLE_S):
        """Polls until every tlm_* user belongs to a lease get finds."""
        m = self.m
        deadline = time.monotonic() + deadline_s
        last_present, orphan_since = {}, {}
        while True:
            t, users = self.acl_snapshot()
            for u in users:
                last_present[u] = t
            ids = [u[len("tlm_"):] for u in users]
            answers = tlm_pipeline(self.d.tcp_port,
                                   [{"action": "get", "token_id": i} for i in ids])
            orphans = []
            for u, lid, (r, t0, t1) in zip(users, ids, answers):
                if r.get("result") == "success":
                    if lid not in m.leases:
                        found = Lease(r["lease"], owner=None, discovered=True)
                        found.log(f"discovered at the backend: a lease whose create "
                                  f"was never answered, expires "
                                  f"{parse_ts(r['lease']['expires'])}")
                        m.add(found)
                        m.count("discovered")
                    else:
                        self.resolve_get(m.leases[lid], r, t0, t1)
                elif r.get("error") == "not_found":
                    orphans.append(u)
                else:
                    m.error(f"get of the lease of user {u} answered {r}")
            if DEBUG:
                print(f"[debug] epoch {m.epoch} +{now_ms() - self.ready_ms} ms: "
                      f"{len(users)} users, orphans {orphans[:3]}... ({len(orphans)})",
                      file=sys.stderr)
            orphan_since = {u: orphan_since.get(u, t) for u in orphans}
            if not orphans:
                self.settled_at = t
                break
            # a lease that expires right now leaves a user for a few ms:
            # only orphans that stay one second count
            stale = [u for u in orphans if t - orphan_since[u] >= 1000]
            if time.monotonic() > deadline + 3 and not stale:
                break    # expiries all the time, never one clean snapshot
            if time.monotonic() > deadline and stale:
                m.count("orphans", len(stale))
                for u in stale:
                    lid = u[len("tlm_"):]
                    known = m.leases.get(lid)
                    m.error(f"redis user {u} has had no live lease for {t - orphan_since[u]} "
                            f"ms, {t - self.ready_ms} ms after the restart "
                            f"({'a create never answered' if known is None else 'known lease'})",
                            known)
                break
            time.sleep(0.05)
        if m.epoch != "final":
            m.c["max_settle_ms"] = max(m.c["max_settle_ms"], now_ms() - self.ready_ms)
        # 4: a dead lease's user went away within the grace after its death
        # (after the restart, if it died while tlmd was down)
        for u, t in last_present.items():
            l = m.leases.get(u[len("tlm_"):])
            if l is None or not l.dead(t):
                continue
            allowed = max(l.dead_base(), self.ready_ms) + EXPIRED_CRED_GRACE_MS
            if t > allowed:
                m.error(f"redis user {u} still existed {t - l.dead_base()} ms after its "
                        f"lease died ({t - self.ready_ms} ms after the restart)", l)
        return last_present

    def probe_credentials(self, live_sample=64, rng=None):
        """AUTH with the credential of each lease that was dead when the
        backend had settled (no orphaned user) must fail (each probed once);
        a sample of live, certain leases must work."""
        m = self.m
        now = now_ms()
        cutoff = (self.settled_at or 0) - SLACK_MS
        dead = [l for l in m.leases.values()
                if l.backend == "redis" and not l.auth_probed and l.dead(cutoff)
                and l.dead_base() <= cutoff]
        verdicts = redis_auth_many(self.srv, [split_cred(l.value) for l in dead])
        m.count("auth_dead", len(dead))
        for l, ok in zip(dead, verdicts):
            l.auth_probed = True
            if ok:
                m.error("the credential of a dead redis lease still works", l)
        live = [l for l in m.leases.values()
                if l.backend == "redis" and not l.dead(now) and not l.cred_maybe_gone
                and l.exp_lo > now + 500]
        if rng is not None and len(live) > live_sample:
            live = rng.sample(live, live_sample)
        verdicts = redis_auth_many(self.srv, [split_cred(l.value) for l in live])
        m.count("auth_live", len(live))
        for l, ok in zip(live, verdicts):
            if not ok:
                m.error("the credential of a live redis lease is refused", l)

    def probe_local_values(self):
        """An expired, revoked or exchanged-away local token must be
        invalid_token: the values of dead leases once, the used values of
        leases that may live after every restart (a stale save would bring
        them back then)."""
        m = self.m
        now = now_ms()
        todo = []
        for l in m.leases.values():
            if l.backend != "local":
                continue
            if l.dead(now):
                todo += [(l, v) for v in l.old_values + [l.value]
                         if v not in l.probed_values]
            else:
                todo += [(l, v) for v in l.old_values]
        answers = tlm_pipeline(self.d.tcp_port, [{"action": "exchange", "token": v,
                                                  "meta": {}} for _, v in todo])
        m.count("exchange_dead", len(todo))
        for (l, v), (r, t0, t1) in zip(todo, answers):
            l.probed_values.add(v)
            if r.get("error") != "invalid_token":
                m.error(f"exchange of a dead local value answered {r}", l)

    def check_all(self, rng):
        self.check_gets()
        self.check_backend()
        self.probe_credentials(rng=rng)
        self.probe_local_values()


# ---------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------

def write_config(tmp_path, redis_env):
    cfg = {"storage": f"sqlite:{tmp_path / 't.db'}", "min_ttl_ms": 1000,
           "retry_base_ms": 200, "retry_max_ms": 1000,
           "backends": {"local": {"type": "local"},
                        "redis": redis_env.settings()}}
    path = tmp_path / "crash.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def run_load(d, workers, model, epoch, rng_seed, kill_delay_ms):
    """Runs the workers; SIGKILLs tlmd after kill_delay_ms (None: no kill,
    the load stops after FINAL_LOAD_S).  Returns the wall time after the
    kill (an upper bound for anything tlmd did)."""
    stop, killed = threading.Event(), threading.Event()
    threads = []
    for w in workers:
        rng = random.Random(f"{rng_seed}/{epoch}/{w.idx}")
        t = threading.Thread(target=w.run, args=(d.tcp_port, rng, stop, killed),
                             name=f"crash-worker-{w.idx}", daemon=True)
        t.start()
        threads.append(t)
    t_kill = None
    if kill_delay_ms is None:
        time.sleep(FINAL_LOAD_S)
        stop.set()
    else:
        time.sleep(kill_delay_ms / 1000.0)
        rc = d.proc.poll()
        if rc is not None:
            model.error(f"tlmd exited by itself (status {rc}) during the load")
        killed.set()
        d.stop(signal.SIGKILL)
        t_kill = now_ms()
    for t in threads:
        t.join(IO_TIMEOUT_S + 20)
        if t.is_alive():
            model.error(f"{t.name} did not finish")
    return t_kill


def settle_uncertain(model, t_kill):
    """After the kill: an uncertain renew / exchange may have set expires to
    any moment between its sending and the kill, plus its ttl."""
    for l in model.uncertain:
        for kind, t_send, ttl in l.pending:
            # a renew may also shorten the lease: expires = now + ttl
            l.exp_lo = min(l.exp_lo, t_send + ttl - SLACK_MS)
            l.exp_hi = max(l.exp_hi, t_kill + ttl + SLACK_MS)
    model.uncertain = []


def final_watch(model, checker, srv, extra_until):
    """tlmd runs on without load: every redis user must disappear within the
    grace after its expiry, and in the end nothing is left."""
    m = model
    end = max([l.exp_hi for l in m.leases.values()] + [extra_until]) \
        + EXPIRED_CRED_GRACE_MS + 300
    reported, gone, seen = set(), set(), set()
    while True:
        t, users = checker.acl_snapshot()
        present = set(users)
        seen |= present
        for l in m.leases.values():
            if l.backend != "redis" or l.id in gone or not l.dead(t):
                continue
            lag = t - max(l.dead_base(), checker.ready_ms)
            if l.user not in present:
                gone.add(l.id)
                if l.user in seen and l.dead_base() >= checker.ready_ms:
                    # died while this tlmd ran: an upper bound of the lag
                    if DEBUG and lag > 500:
                        print(f"[debug] lag {lag}: {l.describe()}", file=sys.stderr)
                    m.c["max_expiry_lag_ms"] = max(m.c["max_expiry_lag_ms"], lag)
            elif lag > EXPIRED_CRED_GRACE_MS and l.id not in reported:
                reported.add(l.id)
                m.error(f"redis user {l.user} still exists {lag} ms after its lease "
                        f"died (tlmd running throughout)", l)
        # and AUTH as the lease's user fails once the grace is over
        now = now_ms()
        due = [l for l in m.leases.values()
               if l.backend == "redis" and not l.auth_probed and l.dead(now)
               and max(l.dead_base(), checker.ready_ms) + EXPIRED_CRED_GRACE_MS <= now]
        m.count("auth_dead", len(due))
        for l, ok in zip(due, redis_auth_many(srv, [split_cred(l.value) for l in due])):
            l.auth_probed = True
            if ok:
                m.error(f"the credential of a redis lease still works "
                        f"{now - l.dead_base()} ms after the lease died", l)
        if t >= end:
            break
        time.sleep(0.1)
    checker.check_gets()
    t, users = checker.acl_snapshot()
    checker.settled_at = t
    if users:
        for u in users:
            m.error(f"redis user {u} is left after every lease has expired",
                    m.leases.get(u[len('tlm_'):]))
    health = tlm_pipeline(checker.d.tcp_port, [{"action": "health"}])[0][0]
    if health.get("result") != "success" or health.get("leases") != 0:
        m.error(f"health after every lease has expired: {health}")
    checker.probe_credentials()
    checker.probe_local_values()


class CrashFailure(AssertionError):
    """What the checks found; .errors lists each problem."""

    def __init__(self, text, errors):
        super().__init__(text)
        self.errors = errors


def raise_errors(model, seed):
    if not model.errors:
        return
    head = (f"crash test (seed {seed}, TLM_CRASH_SEED={seed} to repeat the random "
            f"choices) found {len(model.errors)} problem(s); counts {model.c}")
    shown = model.errors[:15]
    more = len(model.errors) - len(shown)
    raise CrashFailure(head + "\n\n" + "\n\n".join(shown)
                       + (f"\n\n... and {more} more" if more else ""), list(model.errors))


def crash_run(tlmd_factory, tmp_path, redis_server, capsys, kills, weights, what):
    t_start = time.monotonic()
    seed = SEED
    with capsys.disabled():
        print(f"\n{what}: seed {seed} (set TLM_CRASH_SEED to change), {kills} kills")
    rng = random.Random(f"{seed}/{what}")
    env = RedisEnv(redis_server, tmp_path / "secrets")
    cfg = write_config(tmp_path, env)
    model = Model()
    workers = [Worker(i, model, weights) for i in range(WORKERS)]
    d = tlmd_factory(config=cfg, storage=None, name="crash", start=False)
    checker = Checker(model, redis_server, d)
    last_kill = now_ms()

    for epoch in range(kills + 1):
        model.epoch = epoch
        d.start()
        checker.ready_ms = now_ms()
        checker.check_all(rng)
        raise_errors(model, seed)
        if epoch == kills:
            break
        delay = rng.randint(*KILL_DELAY_MS)
        t_kill = run_load(d, workers, model, epoch, f"{seed}/{what}", delay)
        model.c["kills"] += 1
        last_kill = t_kill
        settle_uncertain(model, t_kill)
        raise_errors(model, seed)

    # final round: load without a kill, then everything must expire in time
    model.epoch = "final"
    run_load(d, workers, model, "final", f"{seed}/{what}", None)
    checker.check_all(rng)
    final_watch(model, checker, redis_server, last_kill + TTL_MS[1] + SLACK_MS)
    raise_errors(model, seed)
    rc = d.stop(signal.SIGTERM)
    assert rc == 0, f"tlmd exited {rc} on SIGTERM"

    c = model.c
    elapsed = time.monotonic() - t_start
    with capsys.disabled():
        print(f"\n{what}: {c['kills']} kills, "
              f"{c['creates_local'] + c['creates_redis']} acknowledged creates "
              f"({c['creates_local']} local, {c['creates_redis']} redis), "
              f"{c['revokes']} revokes, {c['renews']} renews, {c['exchanges']} exchanges, "
              f"{c['late_not_found']} requests that met an expiry, "
              f"{c['race_lost']} renews/exchanges that lost to a racing revoke, "
              f"{c['renews_before_exchange']} renews applied before the exchange "
              f"of their pair, "
              f"{c['unknown_creates']} creates and {c['unknown_ops']} other requests cut "
              f"by a kill, {c['discovered']} unanswered creates found live, "
              f"{c['orphans']} orphans; checked {c['gets']} gets, {c['auth_dead']} dead "
              f"and {c['auth_live']} live redis credentials, {c['exchange_dead']} dead "
              f"local values, {c['acl_polls']} ACL USERS polls; slowest settle after a "
              f"restart {c['max_settle_ms']} ms, slowest revocation after expiry (final "
              f"round) <= {c['max_expiry_lag_ms']} ms; seed {seed}; {elapsed:.1f} s")


def test_crash_mixed_load_random_kills(tlmd_factory, tmp_path, redis_server, capsys):
    crash_run(tlmd_factory, tmp_path, redis_server, capsys, KILLS, MIX, "crash test")


def test_crash_racing_pairs(tlmd_factory, tmp_path, redis_server, capsys):
    """The same with pairs of requests for one lease: renew (or exchange),
    then at once revoke; exchange (or renew), then 0-3 ms later renew.  The
    first found a revoke that did not stick: the renew's storage write (made
    whether or not the lease was still live) landed after the revoke's
    delete and re-inserted the record, so the next start brought the lease
    back; store_update now checks first.  The second (issue 9): a renew
    saved the copy of the record it took before an exchange was stored, so
    the used value came back; an update now changes only its own fields of
    the current record."""
    crash_run(tlmd_factory, tmp_path, redis_server, capsys, RACING_KILLS,
              RACING_MIX, "crash test, racing pairs")
