#!/usr/bin/env python3
"""Several tlmd instances on one PostgreSQL database, side by side with etcd.

One command, after scripts/build.sh:

    python3 bench/multi_instance.py

It installs what is missing (Debian 12 packages postgresql-15 and
etcd-server, with sudo when not root), then:
 1. starts a throw-away PostgreSQL 15 cluster with fsync on
    (tests/servers/postgres.py: a temp dir, a free loopback port, run as the
    `postgres` user when we are root, exactly as the tests do);
 2. for 1, 2 and 3 instances: a fresh database, that many build/bin/tlmd
    (backend `local`, each with its own TCP and HTTP port on 127.0.0.1, the
    same --storage postgresql://...), and measures, with one
    build/bin/tlm_bench per instance running together (the connections
    split over the instances, the rates summed):
    - durable creates/s over TCP, 16 connections one request at a time, and
      16 x 8 pipelined; over HTTP keep-alive, 16 connections;
    - revokes/s of existing leases (16 connections, and 16 x 8);
    - gets/s (16 x 8);
    - expiry lateness: EXPIRING leases with a 1 s ttl, created at all the
      instances; how long after its `expires` each lease's row has left the
      database (revoked at the backend, then removed), p50/p99/max. The
      time is the commit timestamp of the removal, noted by a trigger
      (track_commit_timestamp is on), so nothing polls `leases`;
    - takeover (2 and 3 instances): TAKEOVER_LEASES leases with a 3 s ttl
      created at the first instance, which is SIGKILLed 300 ms before they
      expire; how long after `expires` the survivors have revoked them (the
      row is gone, timed as above), p99/max, and when a `get` at every
      survivor answers not_found (a sample of 100, polled every 50 ms; a
      `get` of an expired lease answers not_found by the visibility rule,
      so this one shows visibility, the row shows revocation);
 3. before the tlmd runs and again after them, starts a fresh etcd
    (Debian's etcd-server, 3.4: one node, fsync on as by default, data in
    a temp dir, client URL on a free loopback port), measures lease
    grants/s through its HTTP/JSON gateway (POST /v3/lease/grant
    {"TTL":60}) with the same tlm_bench (--proto etcd), 16 keep-alive
    connections, and stops it (so its leases never expire during a tlmd
    run; two runs show how much the shared machine moved meanwhile);
 4. prints every bench line, then one markdown table.

Everything binds 127.0.0.1 only. Each measured run takes at most DURATION
seconds; every process started here is stopped and every temp dir removed
at the end, also on an error, Ctrl-C or SIGTERM.

env: DURATION (seconds per measured run, default 10), INSTANCES (default
  "1,2,3"), EXPIRING (default 3000), TAKEOVER_LEASES (default 1000),
  TAKEOVER_TIMEOUT (seconds after the last `expires` to wait, default 60),
  TLMD, BENCH (default build/bin/tlmd, build/bin/tlm_bench), TLMD_ARGS
  (extra tlmd arguments, split like a shell), SKIP_ETCD=1.
Exit status: 0 if every measurement ran without a failed request.
"""
import atexit
import datetime
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # tests/servers as `servers`

from benchlib import (DEFAULT_BENCH, DEFAULT_TLMD, Client, Tlmd,  # noqa: E402
                      free_port, stop_on_sigterm)

DURATION = float(os.environ.get("DURATION", "10"))
INSTANCES = [int(n) for n in os.environ.get("INSTANCES", "1,2,3").split(",")]
EXPIRING = int(os.environ.get("EXPIRING", "3000"))
TAKEOVER_LEASES = int(os.environ.get("TAKEOVER_LEASES", "1000"))
TAKEOVER_TIMEOUT = float(os.environ.get("TAKEOVER_TIMEOUT", "60"))
TAKEOVER_GET_SAMPLE = 100
TLMD = os.environ.get("TLMD", DEFAULT_TLMD)
BENCH = os.environ.get("BENCH", DEFAULT_BENCH)
TLMD_ARGS = shlex.split(os.environ.get("TLMD_ARGS", ""))
SKIP_ETCD = os.environ.get("SKIP_ETCD") == "1"

# Making a pool may take about DURATION (see measure_instances).
POOL_TIMEOUT_S = max(60.0, 3 * DURATION)
CONNECTIONS = 16
PIPELINE = 8
LONG_TTL_MS = 3_600_000  # bench creates outlive the run: no expiry load
EXPIRY_TTL_MS = 1000
TAKEOVER_TTL_MS = 3000
KILL_BEFORE_S = 0.3
ETCD_BIN = "/usr/bin/etcd"
PG_BIN = "/usr/lib/postgresql/15/bin/initdb"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr,
          flush=True)


# -- cleanup ------------------------------------------------------------------

class Cleanup:
    """Steps run last-in first-out, once, from `finally` or atexit."""

    def __init__(self):
        self.steps = []

    def add(self, fn):
        self.steps.append(fn)
        return fn

    def remove(self, fn):
        if fn in self.steps:
            self.steps.remove(fn)

    def run(self):
        while self.steps:
            fn = self.steps.pop()
            try:
                fn()
            except BaseException as e:  # keep cleaning up
                log("cleanup: %r" % (e,))


cleanup = Cleanup()
atexit.register(cleanup.run)


def stop_proc(proc, timeout=15.0, sig=signal.SIGTERM):
    """Stops exactly this child: `sig`, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        except ProcessLookupError:
            pass


# -- installing ---------------------------------------------------------------

def installed(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                         capture_output=True, text=True)
    return "ok installed" in out.stdout


def apt_install(packages):
    """Installs the missing Debian packages as scripts/install-test-servers.sh
    does: sudo when not root, and a policy-rc.d that answers 101 meanwhile, so
    no maintainer script starts a system daemon (etcd on :2379, PostgreSQL's
    main cluster on :5432); the previous policy-rc.d is put back."""
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    policy = "/usr/sbin/policy-rc.d"
    backup = None
    if os.path.exists(policy):
        backup = subprocess.run(
            sudo + ["mktemp", policy + ".tlm-backup.XXXXXX"], check=True,
            capture_output=True, text=True).stdout.strip()
        subprocess.run(sudo + ["cp", "-p", policy, backup], check=True)
    try:
        subprocess.run(sudo + ["tee", policy], check=True,
                       input="#!/bin/sh\n# temporary, from tlmd "
                             "bench/multi_instance.py\nexit 101\n",
                       text=True, stdout=subprocess.DEVNULL)
        subprocess.run(sudo + ["chmod", "755", policy], check=True)
        log("installing: %s" % " ".join(missing))
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive",
                               "apt-get", "install", "-y", "-qq",
                               "--no-install-recommends"] + missing,
                       check=True)
    finally:
        if backup:
            subprocess.run(sudo + ["mv", "-f", backup, policy])
        else:
            subprocess.run(sudo + ["rm", "-f", policy])


# -- PostgreSQL ---------------------------------------------------------------

class Psql:
    """One psql session kept open, so a poll costs a round trip and not a
    process start. query() returns the output lines (unaligned, no
    headers)."""

    MARK = "__tlm_bench_end__"

    def __init__(self, pg, db):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [pg.psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", pg.host, "-p", str(pg.port), "-U", pg.admin_user,
             "-d", db],
            env=pg.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.err)
        self.buf = b""
        cleanup.add(self.close)

    def query(self, sql, timeout=30.0):
        # psql runs a statement at its semicolon, then the marker's \echo.
        self.proc.stdin.write(("%s;\n\\echo %s\n" % (sql.rstrip().rstrip(";"),
                                                     self.MARK)).encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        lines = []
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.decode()
                if line == self.MARK:
                    return lines
                lines.append(line)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("psql: no answer within %.0f s" % timeout)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.err.seek(0)
                    raise RuntimeError("psql ended: %s"
                                       % self.err.read().decode().strip())
                self.buf += chunk

    def close(self):
        cleanup.remove(self.close)
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            stop_proc(self.proc, timeout=5)
        self.err.close()


def note_removals(psql):
    """A trigger that notes every row leaving `leases` in bench_gone. With
    track_commit_timestamp on, the commit time of a bench_gone row is the
    moment its lease left the database, exactly and without polling
    `leases` (3000 index probes every few ms cost PostgreSQL more CPU than
    the revocations being measured)."""
    psql.query('CREATE TABLE IF NOT EXISTS bench_gone(id TEXT COLLATE "C")')
    psql.query("CREATE OR REPLACE FUNCTION bench_note_gone() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN INSERT INTO bench_gone "
               "VALUES (OLD.id); RETURN NULL; END $$")
    psql.query("CREATE TRIGGER bench_gone AFTER DELETE ON leases "
               "FOR EACH ROW EXECUTE FUNCTION bench_note_gone()")


class GoneWatch:
    """Lease ids in a temp table of a psql session. left() counts those
    still in `leases` (from bench_gone, cheap); gone() gives {id: Unix time
    of the commit that removed its row}."""

    def __init__(self, psql, table, ids):
        self.psql = psql
        self.table = table
        psql.query('CREATE TEMP TABLE %s(id TEXT COLLATE "C" PRIMARY KEY)'
                   % table)
        for start in range(0, len(ids), 1000):
            rows = ",".join("('%s')" % i for i in ids[start:start + 1000])
            psql.query("INSERT INTO %s VALUES %s" % (table, rows))
        psql.query("ANALYZE %s" % table)
        self.total = len(ids)

    def left(self):
        done = self.psql.query(
            "SELECT count(DISTINCT id) FROM bench_gone JOIN {t} USING (id)"
            .format(t=self.table))
        return self.total - int(done[0])

    def gone(self):
        rows = self.psql.query(
            "SELECT g.id, extract(epoch FROM pg_xact_commit_timestamp(g.xmin))"
            " FROM bench_gone g JOIN {t} USING (id)".format(t=self.table))
        out = {}
        for row in rows:
            lease_id, at = row.split("|")
            out[lease_id] = min(float(at), out.get(lease_id, float(at)))
        self.psql.query("DROP TABLE %s" % self.table)
        return out


# -- tlmd ---------------------------------------------------------------------

class Instance(Tlmd):
    def started(self, timeout):
        """True once the ready line came; False if tlmd exited first or
        `timeout` passed."""
        self._ready.wait(timeout)
        return self.ready_at is not None

    def shutdown(self):
        stop_proc(self.proc)
        if not self.log.closed:
            self.log.close()


def start_instances(n, storage, pwfile, tmp):
    """Starts n tlmd on one database, one after another. Returns (the
    instances, None) or (those that started, the failure's text)."""
    out = []
    for i in range(n):
        t = Instance(TLMD, storage, os.path.join(tmp, "tlmd-n%d-%d.log"
                                                 % (n, i)),
                     extra=["--storage-password-file", pwfile,
                            "--default-ttl", "60000"] + TLMD_ARGS)
        cleanup.add(t.shutdown)
        out.append(t)
        if not t.started(60):
            t.shutdown()
            return out[:-1], ("instance %d of %d did not start: %s"
                              % (i + 1, n, t.log_tail(3).strip()))
    return out, None


def iso_to_unix(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def create_leases(port, count, ttl_ms):
    """Pipelined creates on one TCP connection; [(id, expires as Unix s)]."""
    client = Client(port)
    client.sock.settimeout(30)
    out = []
    try:
        for start in range(0, count, 2000):
            n = min(2000, count - start)
            for reply in client.pipeline(
                    [{"action": "create", "options": {"ttl": ttl_ms}}] * n):
                if reply.get("result") != "success":
                    raise RuntimeError("create failed: %r" % reply)
                out.append((reply["lease"]["id"],
                            iso_to_unix(reply["lease"]["expires"])))
    finally:
        client.sock.close()
    return out


def create_everywhere(instances, total, ttl_ms):
    """Creates `total` leases split over the instances, all at once."""
    parts = split(total, len(instances))
    results = [None] * len(instances)
    errors = []

    def work(i):
        try:
            results[i] = create_leases(instances[i].tcp_port, parts[i], ttl_ms)
        except Exception as e:
            errors.append("instance %d: %s" % (i + 1, e))

    threads = [threading.Thread(target=work, args=(i,))
               for i in range(len(instances))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors or any(r is None for r in results):
        raise RuntimeError("; ".join(errors) or "creates did not finish")
    return [lease for r in results for lease in r]


# -- tlm_bench ----------------------------------------------------------------

def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0)
            for i in range(parts)]


class BenchResult:
    def __init__(self, name, lines, rate=0.0, p99=0.0, error=None):
        self.name = name
        self.lines = lines
        self.rate = rate
        self.p99 = p99
        self.error = error

    def cell(self):
        if self.rate <= 0:
            return "failed"
        mark = " (some failed)" if self.error else ""
        return "%s/s (p99 %.1f ms)%s" % (f"{self.rate:,.0f}", self.p99, mark)


def run_together(name, jobs, setup_timeout=POOL_TIMEOUT_S + 30):
    """jobs: [(port, tlm_bench args)]. Starts one tlm_bench per job, waits
    until each has made its pool and says "ready", then starts all measured
    runs at once. The summed rate counts successful requests."""
    log("%s: %d bench(es)" % (name, len(jobs)))
    procs = []
    try:
        for port, args in jobs:
            argv = [BENCH, "--port", str(port), "--duration-s", str(DURATION),
                    "--requests", "1000000000", "--start-on-stdin", "1"] + args
            err = tempfile.TemporaryFile()
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err,
                                    text=True)
            cleanup.add(proc.kill)
            entry = {"proc": proc, "err": err, "lines": [],
                     "ready": threading.Event(), "argv": argv}

            def read(entry=entry):
                for line in entry["proc"].stdout:
                    line = line.rstrip("\n")
                    if line == "ready":
                        entry["ready"].set()
                    else:
                        entry["lines"].append(line)
                entry["ready"].set()

            entry["reader"] = threading.Thread(target=read, daemon=True)
            entry["reader"].start()
            procs.append(entry)
        deadline = time.monotonic() + setup_timeout
        for e in procs:
            e["ready"].wait(max(0.0, deadline - time.monotonic()))
        for e in procs:
            if e["proc"].poll() is None and e["ready"].is_set():
                e["proc"].stdin.write("\n")
                e["proc"].stdin.flush()
        for e in procs:
            try:
                e["proc"].wait(DURATION + 40)
            except subprocess.TimeoutExpired:
                e["proc"].kill()
                e["proc"].wait()
            e["reader"].join(5)
        rate, p99, lines, errors = 0.0, 0.0, [], []
        for e in procs:
            e["err"].seek(0)
            stderr = e["err"].read().decode(errors="replace").strip()
            result = [ln for ln in e["lines"] if ln.startswith("proto=")]
            lines.extend(e["lines"])
            if not result:
                errors.append("tlm_bench %s: status %s %s" % (
                    " ".join(e["argv"][1:]), e["proc"].returncode, stderr))
                continue
            fields = dict(kv.split("=", 1) for kv in result[0].split()
                          if "=" in kv)
            rate += float(fields["rate"].rstrip("/s"))
            p99 = max(p99, float(fields["p99"]))
            if e["proc"].returncode != 0 or "errors" in fields:
                errors.append("%s: fail=%s errors=%s" % (
                    name, fields.get("fail"), fields.get("errors", "?")))
        return BenchResult(name, lines, rate, p99, "; ".join(errors) or None)
    finally:
        for e in procs:
            if e["proc"].poll() is None:
                e["proc"].kill()
                e["proc"].wait()
            cleanup.remove(e["proc"].kill)
            e["err"].close()


def spread(instances, proto, args, connections=CONNECTIONS, per_bench=None):
    """One job per instance: the connections split, the same arguments
    (plus per_bench(i) if given)."""
    jobs = []
    for i, (inst, conns) in enumerate(zip(instances,
                                          split(connections,
                                                len(instances)))):
        port = inst.tcp_port if proto == "tcp" else inst.http_port
        extra = per_bench(i) if per_bench else []
        jobs.append((port, ["--proto", proto, "--fill-port",
                            str(inst.tcp_port), "--connections", str(conns)]
                     + args + extra))
    return jobs


# -- latency measurements -----------------------------------------------------

def quantiles(values):
    values = sorted(values)
    if not values:
        return None
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return {"p50": pick(0.5), "p99": pick(0.99), "max": values[-1],
            "n": len(values)}


def ms(v):
    return "%.0f" % (v * 1000)


def expiry_lateness(instances, psql):
    """Leases with a 1 s ttl at every instance; each one's lateness is the
    time of the first poll that finds its row gone minus its `expires`."""
    leases = create_everywhere(instances, EXPIRING, EXPIRY_TTL_MS)
    expires = dict(leases)
    watch = GoneWatch(psql, "exp_watch", list(expires))
    if time.time() > min(expires.values()):
        log("expiry: creating took longer than the ttl")
    deadline = max(expires.values()) + 60
    left = watch.left()
    while left > 0 and time.time() < deadline:
        time.sleep(0.1)
        left = watch.left()
    gone = watch.gone()
    # A row removed before its expires would be a bug; it shows as < 0.
    q = quantiles([at - expires[i] for i, at in gone.items()])
    if q is None:
        return "none revoked", "no lease left the database in 60 s"
    text = "p50 %s / p99 %s / max %s ms" % (ms(q["p50"]), ms(q["p99"]),
                                            ms(q["max"]))
    problem = None
    if left:
        problem = "%d of %d still in the database 60 s after their expires" % (
            left, len(expires))
        text += " (%d never)" % left
    return text, problem


def takeover(instances, psql):
    """Leases at instances[0], which is SIGKILLed just before they expire:
    how long after `expires` their rows are gone and every survivor's `get`
    answers not_found."""
    victim, survivors = instances[0], instances[1:]
    leases = create_leases(victim.tcp_port, TAKEOVER_LEASES, TAKEOVER_TTL_MS)
    expires = dict(leases)
    ids = list(expires)
    watch = GoneWatch(psql, "takeover_watch", ids)
    clients = [Client(s.tcp_port) for s in survivors]
    for c in clients:
        c.sock.settimeout(30)
    seen = clients[0].pipeline([{"action": "get", "token_id": i}
                                for i in ids])
    visible = sum(1 for r in seen if r.get("result") == "success")
    # Gets of every lease every 50 ms would load the survivors while they
    # take over; a sample shows when gets stop finding them.
    sample = ids[::max(1, len(ids) // TAKEOVER_GET_SAMPLE)]
    kill_at = min(expires.values()) - KILL_BEFORE_S
    if time.time() > kill_at:
        log("takeover: creating took longer than the ttl allows")
    time.sleep(max(0.0, kill_at - time.time()))
    victim.proc.kill()  # SIGKILL, this one process
    victim.proc.wait()
    killed_at = time.time()
    log("takeover: killed instance 1 (pid %d) %.0f ms before the first "
        "expires" % (victim.pid, (min(expires.values()) - killed_at) * 1000))
    get_gone = {}
    pending_get = [set(sample) for _ in clients]
    deadline = max(expires.values()) + TAKEOVER_TIMEOUT
    left, next_rows = len(ids), 0.0
    while (left > 0 or any(pending_get)) and time.time() < deadline:
        if time.time() >= next_rows:
            next_rows = time.time() + 0.1
            left = watch.left()
        if any(pending_get):
            for k, c in enumerate(clients):
                ask = sorted(pending_get[k])
                if not ask:
                    continue
                replies = c.pipeline([{"action": "get", "token_id": i}
                                      for i in ask])
                now = time.time()
                for i, r in zip(ask, replies):
                    if r.get("error") == "not_found":
                        pending_get[k].discard(i)
                        if all(i not in p for p in pending_get):
                            get_gone[i] = now
        time.sleep(0.05)
    for c in clients:
        c.sock.close()
    row_gone = watch.gone()
    late_rows = quantiles([t - expires[i] for i, t in row_gone.items()])
    late_gets = quantiles([max(0.0, t - expires[i])
                           for i, t in get_gone.items()])
    problems = []
    if visible < len(ids):
        problems.append("before the kill a survivor's get found %d of the "
                        "%d leases of instance 1" % (visible, len(ids)))
    rows = "never" if late_rows is None else "p99 %s / max %s ms" % (
        ms(late_rows["p99"]), ms(late_rows["max"]))
    gets = "never" if late_gets is None else "p99 %s / max %s ms" % (
        ms(late_gets["p99"]), ms(late_gets["max"]))
    if left:
        rows += " (%d never)" % left
        problems.append("%d of %d leases of the killed instance still in "
                        "the database %.0f s after their expires"
                        % (left, len(ids), TAKEOVER_TIMEOUT))
    missing = len(sample) - len(get_gone)
    if missing:
        gets += " (%d never)" % missing
        problems.append("%d of %d sampled leases still gettable at a "
                        "survivor" % (missing, len(sample)))
    return rows, gets, "; ".join(problems) or None


# -- one instance count -------------------------------------------------------

def measure_instances(n, pg, pwfile, tmp, results, problems, raw):
    db = pg.create_database("tlm_n%d" % n)
    storage = pg.conninfo(db)
    instances, failure = start_instances(n, storage, pwfile, tmp)
    col = "%d" % n
    if failure:
        problems.append("%d instances: %s" % (n, failure))
        log(failure)
        for inst in instances:
            inst.shutdown()
        return
    log("%d instance(s) ready: %s" % (n, ", ".join(
        "tcp=%d http=%d" % (i.tcp_port, i.http_port) for i in instances)))
    psql = Psql(pg, db)
    try:
        def bench(key, name, jobs):
            r = run_together("%s, %d instance(s)" % (name, n), jobs)
            results.setdefault(key, {})[col] = r
            raw.extend("n=%d %s" % (n, ln) for ln in r.lines)
            if r.error:
                problems.append("%d instances, %s: %s" % (n, name, r.error))
            return r

        ttl = ["--ttl", str(LONG_TTL_MS)]
        c1 = bench("create", "create tcp 16", spread(
            instances, "tcp", ["--action", "create", "--pipeline", "1"] + ttl))
        c8 = bench("create_p", "create tcp 16x8", spread(
            instances, "tcp",
            ["--action", "create", "--pipeline", str(PIPELINE)] + ttl))
        bench("create_http", "create http 16", spread(
            instances, "http", ["--action", "create"] + ttl))
        # A pool holds what the creates of the same shape made in DURATION
        # (revokes write more than creates), but no more than the pipelined
        # creates make in DURATION, so that making it takes at most about
        # DURATION; a pool used up early only ends its run early.
        for key, name, base, depth in (("revoke", "revoke tcp 16", c1, 1),
                                       ("revoke_p", "revoke tcp 16x8", c8,
                                        PIPELINE)):
            pool = int(min(400_000, max(2000, min(base.rate * 1.5, c8.rate)
                                        * DURATION)) / n)
            bench(key, name, spread(
                instances, "tcp",
                ["--action", "revoke", "--pipeline", str(depth),
                 "--pool", str(pool), "--fill-timeout-s",
                 str(POOL_TIMEOUT_S)]))
        bench("get", "get tcp 16x8", spread(
            instances, "tcp",
            ["--action", "get", "--pipeline", str(PIPELINE),
             "--pool", "1000"]))
        log("expiry lateness, %d instance(s)" % n)
        try:
            # Only now: during the revoke runs it would add an insert to
            # every removal.
            note_removals(psql)
            text, problem = expiry_lateness(instances, psql)
        except Exception as e:
            text, problem = "failed", "expiry: %s" % e
        results.setdefault("expiry", {})[col] = text
        if problem:
            problems.append("%d instances, expiry: %s" % (n, problem))
        if n >= 2:
            log("takeover, %d instances" % n)
            try:
                rows, gets, problem = takeover(instances, psql)
            except Exception as e:
                rows, gets, problem = "failed", "failed", "takeover: %s" % e
            results.setdefault("takeover_rows", {})[col] = rows
            results.setdefault("takeover_gets", {})[col] = gets
            if problem:
                problems.append("%d instances, takeover: %s" % (n, problem))
        for i, inst in enumerate(instances):
            if inst.proc.poll() is not None and not (n >= 2 and i == 0):
                problems.append("%d instances: instance %d exited (status "
                                "%s): %s" % (n, i + 1, inst.proc.returncode,
                                             inst.log_tail(3).strip()))
    finally:
        psql.close()
        for inst in instances:
            inst.shutdown()
            cleanup.remove(inst.shutdown)


# -- etcd ---------------------------------------------------------------------

def measure_etcd(tmp, label, results, problems, raw):
    """A fresh etcd (new data dir), one grant run, etcd stopped: its leases
    must not expire (and be revoked, with writes) during a tlmd run."""
    client, peer = free_port(), free_port()
    while peer == client:
        peer = free_port()
    data = tempfile.mkdtemp(prefix="etcd-data-", dir=tmp)
    url = "http://127.0.0.1:%d" % client
    peer_url = "http://127.0.0.1:%d" % peer
    log_path = os.path.join(tmp, "etcd-%s.log" % label)
    logf = open(log_path, "ab")
    proc = subprocess.Popen(
        [ETCD_BIN, "--name", "tlm-bench", "--data-dir", data,
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url,
         "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", "tlm-bench=" + peer_url,
         "--initial-cluster-state", "new", "--log-level", "warn",
         "--logger", "zap"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)

    def stop():
        stop_proc(proc)
        logf.close()
        shutil.rmtree(data, ignore_errors=True)

    cleanup.add(stop)
    try:
        deadline = time.monotonic() + 30
        grant = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(url + "/v3/lease/grant",
                                             data=b'{"TTL":60}')
                with urllib.request.urlopen(req, timeout=2) as r:
                    grant = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        if not grant or "ID" not in grant:
            with open(log_path, "rb") as f:
                tail = f.read()[-600:].decode(errors="replace")
            problems.append("etcd did not answer a lease grant: %s" % tail)
            return
        version = subprocess.run([ETCD_BIN, "--version"], capture_output=True,
                                 text=True).stdout.split("\n")[0]
        version = version.replace("etcd Version:", "etcd")
        log("%s ready at %s" % (version, url))
        r = run_together("etcd lease grant (%s)" % label, [
            (client, ["--proto", "etcd", "--connections", str(CONNECTIONS),
                      "--ttl", "60000"])])
        results.setdefault("etcd", []).append(r)
        results["etcd_version"] = version
        raw.extend("etcd %s: %s" % (label, ln) for ln in r.lines)
        if r.error:
            problems.append("etcd (%s): %s" % (label, r.error))
    finally:
        stop()
        cleanup.remove(stop)


# -- the table ----------------------------------------------------------------

ROWS = [
    ("create", "create, TCP, 16 connections, 1 at a time (durable)"),
    ("create_p", "create, TCP, 16 x 8 pipelined (durable)"),
    ("create_http", "create, HTTP keep-alive, 16 connections (durable)"),
    ("revoke", "revoke, TCP, 16 connections, 1 at a time"),
    ("revoke_p", "revoke, TCP, 16 x 8 pipelined"),
    ("get", "get, TCP, 16 x 8 pipelined"),
    ("expiry", "expiry lateness, %d leases of 1 s ttl: row gone after "
               "`expires`" % EXPIRING),
    ("takeover_rows", "takeover, %d leases of the SIGKILLed instance: row "
                      "gone (revoked) after `expires`" % TAKEOVER_LEASES),
    ("takeover_gets", "takeover: `get` not_found at every survivor after "
                      "`expires`"),
]


def table(results):
    etcd = [r for r in results.get("etcd", []) if r.rate > 0]
    out = ["| operation | 1 instance | 2 instances | 3 instances | etcd | "
           "ratio (1 instance / etcd grants) |",
           "|---|---|---|---|---|---|"]
    for key, label in ROWS:
        cells = results.get(key, {})
        row = [label]
        for col in ("1", "2", "3"):
            v = cells.get(col)
            row.append("—" if v is None else
                       v if isinstance(v, str) else v.cell())
        one = cells.get("1")
        if key.startswith("create") and etcd:
            row.append("grant: " + " · ".join(r.cell() for r in etcd))
            row.append(" · ".join("%.2f" % (one.rate / r.rate) for r in etcd)
                       if one and one.rate > 0 else "—")
        else:
            row.extend(["—", "—"])
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def main():
    stop_on_sigterm()
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    for binary in (TLMD, BENCH):
        if not os.access(binary, os.X_OK):
            sys.exit("%s is not built: run scripts/build.sh" % binary)
    packages = ["postgresql-15"] + ([] if SKIP_ETCD else ["etcd-server"])
    apt_install(packages)
    from servers.postgres import PostgresServer

    tmp = tempfile.mkdtemp(prefix="tlm-multi-")
    cleanup.add(lambda: shutil.rmtree(tmp, ignore_errors=True))
    results, problems, raw = {}, [], []
    version = durable = "?"
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        pg = PostgresServer(tmp, fsync=True)
        cleanup.add(pg.close)
        pg.start()
        # Commit times tell when a lease's row left the database.
        pg.sql("ALTER SYSTEM SET track_commit_timestamp = on")
        pg.stop()
        pg.start()
        pwfile = pg.write_password_file(os.path.join(tmp, "pg-password"))
        version = pg.sql("SHOW server_version")
        durable = "fsync=%s, synchronous_commit=%s" % (
            pg.sql("SHOW fsync"), pg.sql("SHOW synchronous_commit"))
        log("PostgreSQL %s at %s (%s)" % (version, pg.url, durable))
        # etcd first and last: the machine is shared, and two runs minutes
        # apart show how much its speed moved meanwhile.
        if not SKIP_ETCD:
            measure_etcd(tmp, "first", results, problems, raw)
        for n in INSTANCES:
            measure_instances(n, pg, pwfile, tmp, results, problems, raw)
        pg.close()
        cleanup.remove(pg.close)
        if not SKIP_ETCD:
            measure_etcd(tmp, "last", results, problems, raw)
    finally:
        cleanup.run()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                             "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    print("## tlmd (%s) on one PostgreSQL %s database (%s) vs %s, "
          "%s UTC, %d s a run, %d cores (load %s)" % (
              commit, version, durable, results.get("etcd_version", "etcd"),
              started.strftime("%Y-%m-%d %H:%M"), DURATION, os.cpu_count(),
              " ".join("%.1f" % x for x in os.getloadavg())))
    print()
    print("```")
    print("\n".join(raw))
    print("```")
    print()
    print(table(results))
    print()
    print("Rates count successful requests, summed over one tlm_bench per "
          "instance (the 16 connections split over the instances), all on "
          "the same 2 cores as tlmd and PostgreSQL; p99 is the worst "
          "bench's. etcd: one node, 16 HTTP keep-alive connections one "
          "grant at a time (its gateway does not pipeline), measured "
          "before the tlmd runs and after them (a fresh etcd each time); "
          "the ratio column divides the 1-instance rate by each.")
    if problems:
        print()
        print("Problems:")
        for p in problems:
            print("- " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
