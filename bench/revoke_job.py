#!/usr/bin/env python3
"""Bulk revocation at scale: one revoke_prefix job over N live leases.

Starts tlmd (local backend, --storage memory or sqlite in a temporary
directory), fills N leases with build/bin/tlm_bench, then sends
{"action":"revoke_prefix","backend":"local"} and reports:
  - how long the job took to be answered (stored, leases matched);
  - how long until `job` says done (every lease revoked and removed);
  - the slowest `health` answer on a second connection meanwhile (how much
    the job delays other requests).
Bounded by --timeout-s; stops tlmd and removes its directory.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time

import benchlib


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench/revoke_job.py --leases 1000000")
    ap.add_argument("--tlmd", default=benchlib.DEFAULT_TLMD)
    ap.add_argument("--bench", default=benchlib.DEFAULT_BENCH,
                    help="tlm_bench binary")
    ap.add_argument("--storage", choices=["memory", "sqlite"],
                    default="memory")
    ap.add_argument("--leases", type=int, default=1_000_000)
    ap.add_argument("--fill-timeout-s", type=float, default=120)
    ap.add_argument("--timeout-s", type=float, default=120)
    args = ap.parse_args()
    benchlib.stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="tlm-job-bench-") as tmp:
        storage = ("memory" if args.storage == "memory"
                   else "sqlite:" + os.path.join(tmp, "tlm.db"))
        d = benchlib.Tlmd(args.tlmd, storage, os.path.join(tmp, "tlmd.log"))
        try:
            d.wait_ready(60)
            fill_s = benchlib.fill(args.bench, d.tcp_port, args.leases,
                                   3_600_000, args.fill_timeout_s)
            jobs = benchlib.Client(d.tcp_port)
            probe = benchlib.Client(d.tcp_port)
            slowest = [0.0]
            done = threading.Event()

            def prober():
                while not done.is_set():
                    t = time.monotonic()
                    probe.pipeline([{"action": "health"}])
                    slowest[0] = max(slowest[0], time.monotonic() - t)

            thread = threading.Thread(target=prober, daemon=True)
            thread.start()
            t0 = time.monotonic()
            started = jobs.pipeline([{"action": "revoke_prefix",
                                      "backend": "local"}])[0]
            answered = time.monotonic() - t0
            if started.get("result") != "success":
                sys.exit("revoke_prefix failed: %r" % started)
            while True:
                job = jobs.pipeline([{"action": "job",
                                      "job_id": started["job_id"]}])[0]["job"]
                if job["state"] == "done":
                    break
                if time.monotonic() - t0 > args.timeout_s:
                    sys.exit("the job did not finish within %.0f s: %r"
                             % (args.timeout_s, job))
                time.sleep(0.02)
            finished = time.monotonic() - t0
            done.set()
            thread.join()
        finally:
            d.stop()
    print("revoke_prefix over %d leases (%s storage, local backend), filled in "
          "%.1f s" % (args.leases, args.storage, fill_s))
    print("  answered (job stored, %d matched)   %.3f s"
          % (started["count"], answered))
    print("  done (all revoked and removed)      %.2f s (%d/s)"
          % (finished, started["count"] / finished))
    print("  slowest health answer meanwhile     %.0f ms" % (slowest[0] * 1000))
    print(json.dumps({"leases": args.leases, "storage": args.storage,
                      "answered_s": answered, "done_s": finished,
                      "slowest_other_request_s": slowest[0]}))


if __name__ == "__main__":
    main()
