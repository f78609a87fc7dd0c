#!/usr/bin/env python3
"""Expiry lag: how long after `expires` a lease is revoked and removed.

Starts tlmd, creates LIVE long-lived leases and EXPIRING leases with a short
ttl, then polls `health` until only the long-lived ones are left. Prints the
lag between the last short lease's `expires` and the moment the count
dropped. Bounded: gives up after 60 s.

usage: bench/expiry.py [--tlmd build/bin/tlmd] [--storage memory|sqlite:PATH]
                       [--live 100000] [--expiring 100000] [--ttl-ms 5000]
"""
import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def start(tlmd, storage):
    proc = subprocess.Popen(
        [tlmd, "--http-port", "0", "--tcp-port", "0", "--storage", storage,
         "--max-ttl", "86400000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "tlmd ready http=H tcp=T storage=S"
    if not line.startswith("tlmd ready"):
        proc.kill()
        sys.exit("tlmd did not start: %r" % line)
    return proc, int(line.split("tcp=")[1].split()[0])


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")

    def pipeline(self, messages):
        self.sock.sendall(b"".join(json.dumps(m).encode() + b"\n"
                                   for m in messages))
        return [json.loads(self.file.readline()) for _ in messages]


def create_many(client, count, ttl_ms, expiries=None):
    latest = 0.0
    for start in range(0, count, 5000):
        n = min(5000, count - start)
        for reply in client.pipeline(
                [{"action": "create", "options": {"ttl": ttl_ms}}] * n):
            if reply.get("result") != "success":
                sys.exit("create failed: %r" % reply)
            expires = datetime.datetime.strptime(
                reply["lease"]["expires"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            latest = max(latest, expires)
            if expiries is not None:
                expiries.append(expires)
    return latest


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--tlmd", default=os.path.join(here, "..", "build", "bin",
                                                   "tlmd"))
    ap.add_argument("--storage", default="memory")
    ap.add_argument("--live", type=int, default=100_000)
    ap.add_argument("--expiring", type=int, default=100_000)
    ap.add_argument("--ttl-ms", type=int, default=5000)
    args = ap.parse_args()
    storage = args.storage
    tmp = tempfile.mkdtemp(prefix="tlm-expiry-")
    if storage == "sqlite":
        storage = "sqlite:" + os.path.join(tmp, "e.db")
    proc, port = start(args.tlmd, storage)
    try:
        client = Client(port)
        create_many(client, args.live, 3_600_000)
        t0 = time.time()
        expiries = []
        last_expires = create_many(client, args.expiring, args.ttl_ms, expiries)
        made_in = time.time() - t0
        if time.time() > min(expiries):
            sys.exit("creating took longer than the ttl; raise --ttl-ms")
        # Leases are revoked in deadline order, so the k-th lease to expire
        # is gone by the first poll that counts k gone: its lateness is that
        # poll's time minus its own expires.
        expiries.sort()
        polls = []
        deadline = time.time() + 60
        while time.time() < deadline:
            live = client.pipeline([{"action": "health"}])[0]["leases"]
            polls.append((time.time(), args.live + args.expiring - live))
            if live <= args.live:
                break
            time.sleep(0.005)
        else:
            sys.exit("leases still live 60 s later")
        lateness, k = [], 0
        for when, gone in polls:
            while k < min(gone, len(expiries)):
                lateness.append(max(0.0, when - expiries[k]))
                k += 1
        lateness.sort()
        pick = lambda q: lateness[min(len(lateness) - 1,
                                      int(q * len(lateness)))] * 1000
        lag = polls[-1][0] - last_expires
        print("storage=%s live=%d expiring=%d created_in=%.2fs "
              "lateness p50=%.0f p99=%.0f max=%.0f ms (poll every 5 ms); "
              "all revoked and removed %.0f ms after the last expires"
              % (args.storage, args.live, args.expiring, made_in, pick(0.5),
                 pick(0.99), lateness[-1] * 1000, lag * 1000))
        return 0 if lag < 1.0 else 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
