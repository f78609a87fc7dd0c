#!/usr/bin/env python3
"""Memory per live lease: tlmd's RSS growth per lease, less the token value.

Target (issue "Expiry guarantee"): 1M live leases with less than 400 bytes of
memory per lease beyond the token value itself.

For each storage (memory, then SQLite in a temporary directory): starts
tlmd with the local backend, reads its RSS once ready, creates N live leases
(ttl 24 h, no tags, no meta, with build/bin/tlm_bench --fill), reads the RSS
again right away and after --settle-s, and reports
  raw = (RSS settled - RSS before) / N
  net = raw - the average length of a token value
The average is taken over the values of a sample of the leases (`list`,
then `get`); the values themselves are never printed. RSS is also split into
anonymous memory and file-backed pages (/proc/<pid>/smaps_rollup): with
SQLite the file-backed part is the database mapped by mmap, and the
anonymous part includes SQLite's page cache (128 MB at most).

Bounded: the fill by --fill-timeout-s, the start by 60 s. Stops every tlmd
it starts and deletes its temporary directory. Exit status 0 if every
storage met the target, 1 otherwise.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from benchlib import (DEFAULT_BENCH, DEFAULT_TLMD, Tlmd, connect, fill, mb,
                      stop_on_sigterm)

TTL_MS = 86_400_000
TARGET = 400


def sample_value_length(client, sample):
    """Average token value length over up to `sample` leases."""
    ids = []
    cursor = None
    while len(ids) < sample:
        req = {"action": "list", "limit": min(1000, sample - len(ids))}
        if cursor:
            req["cursor"] = cursor
        page = client.pipeline([req])[0]
        if page.get("result") != "success":
            sys.exit("list failed: %r" % page.get("error"))
        ids += [lease["id"] for lease in page["leases"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if not ids:
        sys.exit("list returned no leases")
    total = 0
    for reply in client.pipeline([{"action": "get", "token_id": i}
                                  for i in ids]):
        if reply.get("result") != "success":
            sys.exit("get failed: %r" % reply.get("error"))
        total += len(reply["lease"]["value"])
    return total / len(ids), len(ids)


def measure(args, storage_name, tmp):
    storage = ("memory" if storage_name == "memory"
               else "sqlite:" + os.path.join(tmp, "m.db"))
    tlmd = Tlmd(args.tlmd, storage, os.path.join(tmp, "tlmd-%s.log"
                                                 % storage_name))
    try:
        r = {"storage": storage_name}
        r["ready_s"] = tlmd.wait_ready(60)
        time.sleep(1)
        r["before"] = tlmd.memory()
        r["fill_s"] = fill(args.bench, tlmd.tcp_port, args.leases, TTL_MS,
                           args.fill_timeout_s)
        r["after_fill"] = tlmd.memory()
        time.sleep(args.settle_s)
        r["settled"] = tlmd.memory()
        client = connect(tlmd.tcp_port)
        r["live"] = client.pipeline([{"action": "health"}])[0]["leases"]
        r["value_len"], r["sampled"] = sample_value_length(client,
                                                           args.sample)
        client.sock.close()
        r["stop_s"] = tlmd.stop()
        tlmd = None
    finally:
        if tlmd is not None:
            tlmd.kill()
    b, s, n = r["before"], r["settled"], r["live"]
    anon = lambda m: m.get("rollup_Anonymous", m.get("RssAnon", 0))
    rss = lambda m: m.get("rollup_Rss", m["VmRSS"])
    r["raw"] = (rss(s) - rss(b)) / n
    r["raw_after_fill"] = (rss(r["after_fill"]) - rss(b)) / n
    r["net"] = r["raw"] - r["value_len"]
    r["anon_per_lease"] = (anon(s) - anon(b)) / n
    r["file_per_lease"] = r["raw"] - r["anon_per_lease"]
    return r


def report(results, args):
    anon = lambda m: m.get("rollup_Anonymous", m.get("RssAnon", 0))
    rss = lambda m: m.get("rollup_Rss", m["VmRSS"])
    split = lambda m: "%s (%s anon)" % (mb(rss(m)), mb(anon(m)))
    rows = [
        ("live leases (health)", lambda r: "%d" % r["live"]),
        ("fill", lambda r: "%.1f s (%.0f/s)" % (r["fill_s"],
                                                r["live"] / r["fill_s"])),
        ("RSS when ready", lambda r: split(r["before"])),
        ("RSS after the fill", lambda r: split(r["after_fill"])),
        ("RSS %g s later" % args.settle_s, lambda r: split(r["settled"])),
        ("peak RSS (VmHWM)", lambda r: mb(r["settled"]["VmHWM"])),
        ("bytes/lease, raw (right after fill)",
         lambda r: "%.0f (%.0f)" % (r["raw"], r["raw_after_fill"])),
        ("  anonymous / file-backed", lambda r: "%.0f / %.0f" % (
            r["anon_per_lease"], r["file_per_lease"])),
        ("token value length (avg of %d)" % args.sample,
         lambda r: "%.1f" % r["value_len"]),
        ("bytes/lease beyond the value (target < %d)" % TARGET,
         lambda r: "%.0f" % r["net"]),
        ("  anonymous only, beyond the value",
         lambda r: "%.0f" % (r["anon_per_lease"] - r["value_len"])),
    ]
    width = max(len(name) for name, _ in rows)
    cells = [[fmt(r) for r in results] for _, fmt in rows]
    cw = max([len(c) for row in cells for c in row] + [8])
    print("memory: %d live leases (ttl 24 h, no tags, no meta), local "
          "backend" % args.leases)
    print("%-*s  %s" % (width, "", "  ".join(
        "%-*s" % (cw, r["storage"]) for r in results)))
    for (name, _), row in zip(rows, cells):
        print("%-*s  %s" % (width, name, "  ".join("%-*s" % (cw, c)
                                                    for c in row)))
    if args.json:
        print(json.dumps(results, sort_keys=True))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench/memory.py --storage memory --leases 1000000")
    ap.add_argument("--tlmd", default=DEFAULT_TLMD)
    ap.add_argument("--bench", default=DEFAULT_BENCH, help="tlm_bench binary")
    ap.add_argument("--storage", choices=["memory", "sqlite", "both"],
                    default="both", help="default: both, one after the other")
    ap.add_argument("--leases", type=int, default=1_000_000,
                    help="live leases to create (default 1000000)")
    ap.add_argument("--settle-s", type=float, default=5,
                    help="wait after the fill before the last RSS reading "
                         "(default 5)")
    ap.add_argument("--sample", type=int, default=1000,
                    help="leases whose value length is averaged "
                         "(default 1000)")
    ap.add_argument("--fill-timeout-s", type=float, default=180,
                    help="bound on the fill (default 180)")
    ap.add_argument("--json", action="store_true",
                    help="also print the results as one JSON array")
    args = ap.parse_args()
    if args.leases < 1 or args.sample < 1:
        ap.error("--leases and --sample must be at least 1")
    for binary in (args.tlmd, args.bench):
        if not os.access(binary, os.X_OK):
            sys.exit("%s is not built (scripts/build.sh)" % binary)
    stop_on_sigterm()
    storages = (["memory", "sqlite"] if args.storage == "both"
                else [args.storage])
    results = []
    for name in storages:
        tmp = tempfile.mkdtemp(prefix="tlm-memory-")
        try:
            results.append(measure(args, name, tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)
    return 0 if all(r["net"] < TARGET for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
