#!/usr/bin/env python3
"""Slowloris: a normal HTTP client's latency before and during a flood of
slow connections (200 sending a header byte a second, 40 sending nothing,
from 12 loopback addresses; each closed one is reopened at once).

    bench/http_slowloris.py [--tlmd PATH] [--seconds 6] [-- tlmd flags...]

Prints p50/p99/max before and during, failures, and how long the slow
connections lived. Without tlmd flags it passes none, so it also runs
against a tlmd that has no HTTP limits (there, expect failures).
"""
import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from benchlib import DEFAULT_TLMD, Tlmd, stop_on_sigterm  # noqa: E402
from test_http_hardening import percentile, run_flood  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tlmd", default=DEFAULT_TLMD)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("flags", nargs="*", help="extra tlmd flags (after --)")
    args = ap.parse_args()
    stop_on_sigterm()
    log = os.path.join(tempfile.gettempdir(), "http_slowloris.tlmd.log")
    tlmd = Tlmd(args.tlmd, "memory", log, extra=args.flags)
    try:
        tlmd.wait_ready(15)
        res = run_flood(tlmd.http_port, during_s=args.seconds)
        for phase in ("before", "during"):
            lat = res[phase]
            print(f"{phase:6}: {len(lat):4} requests, p50 "
                  f"{percentile(lat, 50) * 1000:7.1f} ms, p99 "
                  f"{percentile(lat, 99) * 1000:7.1f} ms, max "
                  f"{max(lat) * 1000:7.1f} ms, failures "
                  f"{len(res[phase + '_failed'])}")
        life = res["flood"].lifetimes
        print(f"slow connections closed by the server: {len(life)}, longest "
              f"lived {max(life, default=0):.2f} s; still open at the end: "
              f"{len(res['flood'].open)}")
    finally:
        tlmd.stop()


if __name__ == "__main__":
    main()
