#!/usr/bin/env python3
"""Restart with many leases in SQLite, some expired while tlmd was down.

Targets (issue "Expiry guarantee"): a restart with 1M leases in SQLite is
serving requests within 10 s, and has revoked every lease that expired while
it was down within 30 s.

Steps, all against one SQLite file in a temporary directory, with the local
backend:
 1. start tlmd, create one probe lease and the long-lived leases (ttl 1 h),
    then the short ones (--expiring-fraction of --leases) with a ttl just
    long enough that none expires before tlmd is stopped (fills use
    build/bin/tlm_bench --fill);
 2. SIGTERM tlmd and wait for it to exit; count the rows in the file;
 3. wait until every short lease is past its `expires`;
 4. start tlmd again on the same file and measure, from the exec:
    (a) the ready line, (b) the first successful `get` of the probe lease
    (and `health`), (c) the moment the file holds only the long-lived
    leases again: every expired lease revoked and removed. (c) polls the
    file with Python's sqlite3 module, read-only, while tlmd runs.
    Also reports the restarted tlmd's RSS after loading and at the end.

Bounded: each fill by --fill-timeout-s, the start by 60 s, the revocation
phase by --timeout-s. Stops every tlmd it starts and deletes its temporary
directory. Exit status 0 if both targets were met, 1 otherwise.
"""
import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time

from benchlib import (DEFAULT_BENCH, DEFAULT_TLMD, Tlmd, connect, fill, mb,
                      stop_on_sigterm)

LONG_TTL_MS = 3_600_000
SERVE_TARGET_S = 10.0
REVOKE_TARGET_S = 30.0


def db_counts(path, short_ttl_ms, immutable):
    """(rows, short rows, latest `expires` of a short row in ms)."""
    uri = "file:%s?%s" % (path, "immutable=1" if immutable else "mode=ro")
    with sqlite3.connect(uri, uri=True) as db:
        rows = db.execute("SELECT count(*) FROM leases").fetchone()[0]
        short, latest = db.execute(
            "SELECT count(*), max(expires_ms) FROM leases WHERE ttl_ms = ?",
            (short_ttl_ms,)).fetchone()
    return rows, short, latest or 0


def file_size(path):
    return sum(os.path.getsize(path + suffix)
               for suffix in ("", "-wal", "-shm")
               if os.path.exists(path + suffix))


def first_answer(tcp_port, probe_id, limit_s):
    """Polls the TCP port from now on until a `get` of the probe lease and a
    `health` succeed; (monotonic time the connection was accepted, time of
    that answer, health reply)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            client = connect(tcp_port, timeout=limit_s)
        except OSError:
            time.sleep(0.002)
            continue
        accepted = time.monotonic()
        try:
            got, health = client.pipeline(
                [{"action": "get", "token_id": probe_id},
                 {"action": "health"}])
        except (OSError, ValueError):
            time.sleep(0.002)
            continue
        finally:
            client.sock.close()
        if (got.get("result") == "success"
                and health.get("result") == "success"):
            return accepted, time.monotonic(), health
        sys.exit("restarted tlmd answered %r / %r" % (got.get("error"),
                                                      health.get("error")))
    sys.exit("restarted tlmd answered no get within %.0f s" % limit_s)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench/restart.py --leases 1000000 --json")
    ap.add_argument("--tlmd", default=DEFAULT_TLMD)
    ap.add_argument("--bench", default=DEFAULT_BENCH, help="tlm_bench binary")
    ap.add_argument("--leases", type=int, default=1_000_000,
                    help="leases stored before the restart (default 1000000)")
    ap.add_argument("--expiring-fraction", type=float, default=0.7,
                    help="share of them that expire while tlmd is down "
                         "(default 0.7)")
    ap.add_argument("--short-ttl-ms", type=int, default=0,
                    help="ttl of the expiring leases (default: twice their "
                         "fill time, estimated from the long-lived fill, "
                         "plus 10 s)")
    ap.add_argument("--fill-timeout-s", type=float, default=180,
                    help="bound on each fill (default 180)")
    ap.add_argument("--timeout-s", type=float, default=120,
                    help="bound on the revocation phase after the restart "
                         "(default 120)")
    ap.add_argument("--json", action="store_true",
                    help="also print the results as one JSON object")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (database, logs)")
    args = ap.parse_args()
    if not 0 <= args.expiring_fraction < 1:
        ap.error("--expiring-fraction must be in [0, 1)")
    if args.leases < 1:
        ap.error("--leases must be at least 1")
    for binary in (args.tlmd, args.bench):
        if not os.access(binary, os.X_OK):
            sys.exit("%s is not built (scripts/build.sh)" % binary)
    n_short = int(args.leases * args.expiring_fraction)
    n_long = args.leases - n_short  # includes the probe lease
    stop_on_sigterm()
    tmp = tempfile.mkdtemp(prefix="tlm-restart-")
    db = os.path.join(tmp, "tlm.db")
    storage = "sqlite:" + db
    tlmd = None
    r = {"leases": args.leases}
    try:
        # 1. fill
        tlmd = Tlmd(args.tlmd, storage, os.path.join(tmp, "tlmd-1.log"))
        tlmd.wait_ready(60)
        client = connect(tlmd.tcp_port)
        probe = client.pipeline([{"action": "create",
                                  "options": {"ttl": LONG_TTL_MS}}])[0]
        client.sock.close()
        if probe.get("result") != "success":
            sys.exit("create failed: %r" % probe.get("error"))
        probe_id = probe["lease"]["id"]
        r["fill_long_s"] = fill(args.bench, tlmd.tcp_port, n_long - 1,
                                LONG_TTL_MS, args.fill_timeout_s)
        short_ttl = args.short_ttl_ms
        if not short_ttl:
            rate = (n_long / r["fill_long_s"] if n_long > 1000
                    else 20_000.0)
            short_ttl = int((2 * n_short / rate + 10) * 1000)
        r["short_ttl_ms"] = short_ttl
        short_start = time.time()
        r["fill_short_s"] = fill(args.bench, tlmd.tcp_port, n_short,
                                 short_ttl, args.fill_timeout_s)
        # 2. stop
        r["first_rss_before_stop"] = tlmd.memory()["VmRSS"]
        r["stop_s"] = tlmd.stop()
        stopped = time.time()
        rows, short_rows, latest_ms = db_counts(db, short_ttl, immutable=True)
        r["db_bytes"] = file_size(db)
        if stopped >= short_start + short_ttl / 1000:
            print("warning: tlmd stopped %.1f s after the first short lease "
                  "expired, so it revoked some itself; raise --short-ttl-ms"
                  % (stopped - short_start - short_ttl / 1000),
                  file=sys.stderr)
        if rows != args.leases:
            print("warning: %d rows stored, %d leases created"
                  % (rows, args.leases), file=sys.stderr)
        r["rows_before"] = rows
        r["expired_while_down"] = short_rows
        r["long_lived"] = long_rows = rows - short_rows
        # 3. wait until every short lease has expired
        wait = latest_ms / 1000 + 0.5 - time.time()
        r["waited_s"] = max(0.0, wait)
        if wait > 0:
            time.sleep(wait)

        # 4. restart and measure
        tlmd = Tlmd(args.tlmd, storage, os.path.join(tmp, "tlmd-2.log"))
        accepted, answered, health = first_answer(tlmd.tcp_port, probe_id,
                                                  60)
        r["ready_s"] = tlmd.wait_ready(60)
        r["accepted_s"] = accepted - tlmd.started_at
        r["first_get_s"] = answered - tlmd.started_at
        r["health_leases"] = health["leases"]
        r["rss_loaded"] = tlmd.memory()
        polls = []
        gets = []  # latency of a `get` at each poll, while tlmd revokes
        client = connect(tlmd.tcp_port)
        deadline = tlmd.started_at + args.timeout_s
        left = None
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            left = db_counts(db, short_ttl, immutable=False)[0]
            t1 = time.monotonic()
            polls.append((t1 - tlmd.started_at, left, t1 - t0))
            if left <= long_rows:
                break
            got = client.pipeline([{"action": "get", "token_id": probe_id}])
            gets.append(time.monotonic() - t1)
            if got[0].get("result") != "success":
                sys.exit("get failed while revoking: %r"
                         % got[0].get("error"))
            # Each count(*) scans the table: poll at most a third of the
            # time, so the reader leaves the 2 cores to tlmd.
            time.sleep(max(0.2, 2 * (t1 - t0)))
        if left is None or left > long_rows:
            r["revoked_s"] = None
            print("error: %d expired leases still stored %.0f s after the "
                  "restart" % (left - long_rows, args.timeout_s),
                  file=sys.stderr)
        else:
            r["revoked_s"] = polls[-1][0]
        client.sock.close()
        r["poll_count_s"] = max(p[2] for p in polls)
        r["get_while_revoking_ms"] = ([1000 * max(gets), len(gets)] if gets
                                      else None)
        removing = [p for p in polls if p[1] < rows]
        r["first_removal_seen_s"] = removing[0][0] if removing else None
        r["rss_end"] = tlmd.memory()
        r["restart_stop_s"] = tlmd.stop()
        tlmd = None
    finally:
        if tlmd is not None:
            tlmd.kill()
        if args.keep:
            print("kept %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    report(r, args)
    met = (r["first_get_s"] < SERVE_TARGET_S and r["revoked_s"] is not None
           and r["revoked_s"] < REVOKE_TARGET_S)
    return 0 if met else 1


def rss_text(m):
    anon = m.get("rollup_Anonymous", m.get("RssAnon", 0))
    rss = m.get("rollup_Rss", m["VmRSS"])
    return "%s (anon %s, file %s; peak %s)" % (
        mb(rss), mb(anon), mb(rss - anon), mb(m["VmHWM"]))


def report(r, args):
    rate = lambda n, s: "%.0f/s" % (n / s) if s else "-"
    n_short = r["expired_while_down"]
    rows = [
        ("fill: %d long-lived (ttl 1 h)" % r["long_lived"],
         "%.1f s (%s)" % (r["fill_long_s"], rate(r["long_lived"] - 1,
                                                 r["fill_long_s"])), ""),
        ("fill: %d expiring (ttl %.1f s)" % (n_short, r["short_ttl_ms"] / 1e3),
         "%.1f s (%s)" % (r["fill_short_s"], rate(n_short, r["fill_short_s"])),
         ""),
        ("RSS before the stop", mb(r["first_rss_before_stop"]), ""),
        ("SIGTERM -> exit", "%.2f s" % r["stop_s"], ""),
        ("database after the stop", "%d rows, %s" % (r["rows_before"],
                                                   mb(r["db_bytes"])), ""),
        ("waited for the short leases to expire", "%.1f s" % r["waited_s"],
         ""),
        ("restart: exec -> ready line", "%.2f s" % r["ready_s"], ""),
        ("restart: exec -> TCP connection accepted",
         "%.2f s" % r["accepted_s"], ""),
        ("restart: exec -> first get + health answered",
         "%.2f s" % r["first_get_s"], "< %.0f s" % SERVE_TARGET_S),
        ("  health: live leases", "%d" % r["health_leases"], ""),
        ("restart: exec -> first removal seen",
         "%.1f s" % r["first_removal_seen_s"]
         if r["first_removal_seen_s"] is not None else "-", ""),
        ("restart: exec -> all %d expired revoked + removed" % n_short,
         ("%.1f s (%s from ready)" % (
             r["revoked_s"],
             rate(n_short, r["revoked_s"] - r["ready_s"])))
         if r["revoked_s"] is not None else "not within %.0f s"
         % args.timeout_s,
         "< %.0f s" % REVOKE_TARGET_S),
        ("  (poll: count(*) of the file, slowest took)",
         "%.2f s" % r["poll_count_s"], ""),
        ("get while revoking: slowest of one per poll",
         "%.0f ms (%d gets)" % tuple(r["get_while_revoking_ms"])
         if r["get_while_revoking_ms"] else "-", ""),
        ("RSS after loading", rss_text(r["rss_loaded"]), ""),
        ("RSS after revoking", rss_text(r["rss_end"]), ""),
        ("restarted tlmd: SIGTERM -> exit", "%.2f s" % r["restart_stop_s"],
         ""),
    ]
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(b) for _, b, c in rows if c)
    print("restart: SQLite, local backend, %d leases" % r["leases"])
    print("%-*s  %-*s  %s" % (width, "step", vwidth, "measured", "target"))
    for a, b, c in rows:
        print("%-*s  %-*s  %s" % (width, a, vwidth, b, c))
    if args.json:
        print(json.dumps(r, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
