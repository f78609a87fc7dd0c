#!/usr/bin/env python3
"""Both floods at once: a normal client's latency over TCP and HTTP before
and while 2,000 idle TCP connections and 200 slowloris HTTP connections
(plus 40 silent ones, from 12 loopback addresses) are open.

    bench/hostile_clients.py [--tlmd PATH] [--seconds 6] [-- tlmd flags...]

Prints p50/p99/max and failures per transport and phase, and tlmd's RSS.
"""
import argparse
import os
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from benchlib import DEFAULT_TLMD, Tlmd, mb, stop_on_sigterm  # noqa: E402
from test_http_hardening import SlowFlood, measure, percentile  # noqa: E402
from tlmd_harness import TcpClient  # noqa: E402
import resource  # noqa: E402

IDLE_TCP = 2000


def tcp_latencies(port, seconds):
    """A normal TCP client: one `health` every 2 ms on one connection, and
    every 25th on a fresh one. Returns (latencies in s, failures)."""
    latencies, failures = [], []
    end = time.monotonic() + seconds
    client = TcpClient(port, timeout=5)
    i = 0
    try:
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                if i % 25 == 24:
                    with TcpClient(port, timeout=5) as fresh:
                        r = fresh.request({"action": "health"})
                else:
                    r = client.request({"action": "health"})
                if r.get("result") != "success":
                    failures.append(r)
            except OSError as e:
                failures.append(repr(e))
                client = TcpClient(port, timeout=5)
            latencies.append(time.monotonic() - t0)
            i += 1
            time.sleep(0.002)
    finally:
        client.close()
    return latencies, failures


def both(tcp_port, http_port, seconds):
    out = {}
    t = threading.Thread(target=lambda: out.update(
        tcp=tcp_latencies(tcp_port, seconds)))
    t.start()
    out["http"] = measure(http_port, seconds)
    t.join()
    return out


def report(phase, results):
    for transport, (lat, failed) in sorted(results.items()):
        print(f"{phase:6} {transport:4}: {len(lat):5} requests, p50 "
              f"{percentile(lat, 50) * 1000:7.2f} ms, p99 "
              f"{percentile(lat, 99) * 1000:7.2f} ms, max "
              f"{max(lat) * 1000:7.1f} ms, failures {len(failed)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tlmd", default=DEFAULT_TLMD)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("flags", nargs="*", help="extra tlmd flags (after --)")
    args = ap.parse_args()
    stop_on_sigterm()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    log = os.path.join(tempfile.gettempdir(), "hostile_clients.tlmd.log")
    tlmd = Tlmd(args.tlmd, "memory", log, extra=args.flags)
    idle = []
    flood = None
    try:
        tlmd.wait_ready(15)
        report("before", both(tlmd.tcp_port, tlmd.http_port, 2.0))
        flood = SlowFlood(tlmd.http_port)
        flood.start()
        for _ in range(IDLE_TCP):
            idle.append(socket.create_connection(("127.0.0.1", tlmd.tcp_port),
                                                 timeout=10))
        report("during", both(tlmd.tcp_port, tlmd.http_port, args.seconds))
        print(f"held: {IDLE_TCP} idle TCP, {len(flood.open)} slow HTTP open "
              f"at the end ({len(flood.lifetimes)} cut at their deadline); "
              f"tlmd RSS {mb(tlmd.memory()['VmRSS'])}")
    finally:
        if flood is not None:
            flood.stop()
        for s in idle:
            s.close()
        tlmd.stop()


if __name__ == "__main__":
    main()
