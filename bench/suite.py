#!/usr/bin/env python3
"""tlmd side by side with Redis and etcd, in one run on one machine (issue 12).

    python3 bench/suite.py [--duration S] [--tlmd PATH] [--bench PATH]
                           [--only N...] [--repeat R] [--idle [N]]
                           [--taskset CPUS]

Starts redis-server (no persistence), etcd (one node, fsync on: its
defaults) and tlmd (memory, or SQLite in a temporary directory; a fresh
tlmd for every row), all on free 127.0.0.1 ports, and stops them all at the
end, also on an error or Ctrl-C. tlmd and etcd are driven by
build/bin/tlm_bench, Redis by redis-benchmark (SET key:__rand_int__ v EX
600). Each row runs for --duration seconds (default 5); the whole default
run takes about a minute, --idle adds about 50 s (tlmd accepts 10,000
connections slowly), --repeat R multiplies the rest by R.

Server CPU per request is utime+stime of the server process (all its
threads, from /proc/<pid>/stat) over the measured run, divided by the
requests answered; the load generator's CPU per request (client CPU) is
shown too, since on a small machine it competes with the server for the
same cores. The machine may be shared and noisy, so the ratios between rows
of one run mean more than any absolute number.

  --only 1 3      run only these scenarios (1-6, as in issue 12)
  --repeat R      R rounds of every row, the table showing each row's
                  median run by ops/s (for noisy machines; take R odd)
  --idle [N]      also hold N idle TCP connections to tlmd (default 10000)
                  and report its RSS and an unpipelined client with and
                  without them
  --taskset CPUS  start every server under `taskset -c CPUS` (e.g. 0 for
                  one core), so tlmd and its peers get the same cores

Prints one markdown table on stdout (progress goes to stderr).
"""
import argparse
import csv
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from benchlib import DEFAULT_BENCH, DEFAULT_TLMD, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
REDIS_COMMAND = ["SET", "key:__rand_int__", "v", "EX", "600"]
LEASE_TTL_MS = 60000  # tlmd and etcd leases outlive every run
# tlm_bench stops at --duration-s; this many requests are never reached.
UNBOUNDED_REQUESTS = "1000000000"


STARTED = time.monotonic()


def log(message):
    print("suite %5.1fs: %s" % (time.monotonic() - STARTED, message),
          file=sys.stderr, flush=True)


# -- servers --------------------------------------------------------------------

def server_preexec():
    """In the server's child before exec: a session of its own, so that a
    Ctrl-C reaches only this script, which then stops the servers in order;
    and SIGTERM when this script dies, even by SIGKILL."""
    os.setsid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Server:
    """A server process we started: its CPU time, RSS, and a sure stop."""

    def __init__(self, name, argv, tmp, pin=None):
        self.name = name
        self.log_path = os.path.join(tmp, name + ".log")
        self.log = open(self.log_path, "ab")
        # taskset execs the server, so the pid is the server's own.
        prefix = ["taskset", "-c", pin] if pin else []
        self.proc = subprocess.Popen(prefix + argv, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=server_preexec)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        """utime + stime of all threads so far."""
        with open("/proc/%d/stat" % self.pid) as f:
            # The name in parentheses may hold spaces: split after it.
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, size=800):
        with open(self.log_path, "rb") as f:
            return f.read()[-size:].decode(errors="replace")

    def stop(self):
        """SIGTERM, then SIGKILL if it is still running after 10 s."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log("%s ignored SIGTERM for 10 s; killing it" % self.name)
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_until(ready, server, what, timeout=30.0):
    """Polls ready() until it is true; exits if the server dies or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.alive():
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("suite: %s not ready within %.0f s; its log ends:\n%s"
             % (what, timeout, server.log_tail()))


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def start_tlmd(args, tmp, storage, label, extra=()):
    """A fresh tlmd; storage is 'memory' or 'sqlite' (a new database)."""
    if storage == "sqlite":
        folder = tempfile.mkdtemp(prefix="sqlite-", dir=tmp)
        storage = "sqlite:" + os.path.join(folder, "tlm.db")
    http_port, tcp_port = free_port(), free_port()
    server = Server("tlmd-" + label, [
        args.tlmd, "--bind", "127.0.0.1", "--http-port", str(http_port),
        "--tcp-port", str(tcp_port), "--storage", storage,
        "--default-ttl", str(LEASE_TTL_MS), "--max-ttl", "86400000",
        *extra], tmp, args.taskset)
    server.http_port, server.tcp_port = http_port, tcp_port
    wait_until(lambda: port_open(http_port) and port_open(tcp_port),
               server, "tlmd --storage " + storage)
    return server


def start_redis(args, tmp):
    port = free_port()
    folder = tempfile.mkdtemp(prefix="redis-", dir=tmp)
    server = Server("redis", [
        "redis-server", "--save", "", "--appendonly", "no",
        "--port", str(port), "--bind", "127.0.0.1", "--dir", folder],
        tmp, args.taskset)
    server.port = port

    def pong():
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    wait_until(pong, server, "redis-server")
    return server


def start_etcd(args, tmp):
    """One etcd node with its default fsync; ready once a grant works."""
    client, peer = free_port(), free_port()
    url, peer_url = ("http://127.0.0.1:%d" % p for p in (client, peer))
    server = Server("etcd", [
        "etcd", "--name", "suite", "--data-dir",
        tempfile.mkdtemp(prefix="etcd-", dir=tmp),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", "suite=" + peer_url,
        "--initial-cluster-state", "new", "--log-level", "warn",
        "--logger", "zap"], tmp, args.taskset)
    server.port = client

    def grants():
        req = urllib.request.Request(url + "/v3/lease/grant",
                                     data=b'{"TTL":60}')
        with urllib.request.urlopen(req, timeout=2) as r:
            return "ID" in json.load(r)
    wait_until(grants, server, "etcd")
    return server


class Servers:
    """Every server started, so that all of them stop whatever happens."""

    def __init__(self):
        self.running = []

    def add(self, server):
        self.running.append(server)
        return server

    def stop(self, server):
        server.stop()
        self.running.remove(server)

    def stop_all(self):
        for server in reversed(self.running):
            try:
                server.stop()
            except Exception as e:  # keep stopping the others
                log("stopping %s: %r" % (server.name, e))
        self.running = []


# -- measured runs ----------------------------------------------------------------

class Result:
    """One measured run; cpu is (server, client) CPU seconds."""

    def __init__(self, ops, p50, p99, requests, cpu, failed=0):
        self.ops, self.p50, self.p99, self.failed = ops, p50, p99, failed
        per_request = 1e6 / requests if requests else 0.0
        self.cpu_us, self.client_cpu_us = (c * per_request for c in cpu)


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(server, command, timeout):
    """Runs a client command; returns its outcome and the CPU seconds the
    server and the client used meanwhile. The client's tells whether the
    load generator, not the server, was the limit."""
    before = server.cpu_seconds(), children_cpu_seconds()
    run = subprocess.run(command, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=timeout)
    cpu = (server.cpu_seconds() - before[0],
           children_cpu_seconds() - before[1])
    if not server.alive():
        sys.exit("suite: %s died during the run; its log ends:\n%s"
                 % (server.name, server.log_tail()))
    return run, cpu


def tlm_bench(args, server, port, proto, connections, pipeline=1):
    """One tlm_bench run (create, or grant for etcd) for --duration s."""
    command = [args.bench, "--port", str(port), "--proto", proto,
               "--action", "grant" if proto == "etcd" else "create",
               "--connections", str(connections),
               "--pipeline", str(pipeline), "--ttl", str(LEASE_TTL_MS),
               "--requests", UNBOUNDED_REQUESTS,
               "--duration-s", str(args.duration)]
    run, cpu = measured(server, command, args.duration + 60)
    # The summary line: proto=.. requests=.. ok=.. fail=.. rate=../s
    # p50=.. p99=.. max=.. ms
    line = next((ln for ln in run.stdout.splitlines()
                 if ln.startswith("proto=")), None)
    if line is None:
        sys.exit("suite: tlm_bench printed no summary (status %d):\n%s%s"
                 % (run.returncode, run.stdout, run.stderr))
    f = dict(re.findall(r"(\w+)=([0-9.]+)", line))
    ok, fail = int(f["ok"]), int(f["fail"])
    if fail:
        log("tlm_bench: " + line)
    return Result(float(f["rate"]), float(f["p50"]), float(f["p99"]),
                  ok + fail, cpu, fail)


def redis_benchmark_command(port, connections, pipeline, requests):
    return ["redis-benchmark", "-p", str(port), "-c", str(connections),
            "-P", str(pipeline), "-n", str(requests), "-r", "1000000",
            "--csv", *REDIS_COMMAND]


def redis_benchmark(args, server, connections, pipeline):
    """redis-benchmark runs a request count, not a duration: a short probe
    sizes the measured run to take about --duration s."""
    probe = 20000
    t0 = time.monotonic()
    run = subprocess.run(redis_benchmark_command(server.port, connections,
                                                 pipeline, probe),
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        sys.exit("suite: redis-benchmark failed (status %d):\n%s%s"
                 % (run.returncode, run.stdout, run.stderr))
    rate = probe / max(time.monotonic() - t0, 1e-3)
    requests = max(probe, int(rate * args.duration))
    command = redis_benchmark_command(server.port, connections, pipeline,
                                      requests)
    run, cpu = measured(server, command, args.duration * 5 + 60)
    rows = list(csv.DictReader(run.stdout.splitlines()))
    if run.returncode != 0 or not rows:
        sys.exit("suite: redis-benchmark failed (status %d):\n%s%s"
                 % (run.returncode, run.stdout, run.stderr))
    row = rows[-1]
    return Result(float(row["rps"]), float(row["p50_latency_ms"]),
                  float(row["p99_latency_ms"]), requests, cpu)


# -- scenarios ------------------------------------------------------------------

# Each: number, what, tlmd's storage / protocol / connections / pipeline, and
# its peers as (peer key, target ratio tlmd/peer or None, target text).
SCENARIOS = [
    ("1", "TCP create, memory, 16 conns × 8 pipelined",
     ("memory", "tcp", 16, 8),
     [("redis 50×16", 0.8, "≥0.8× Redis pipelined"),
      ("redis 16×8", None, "like for like")]),
    ("2", "TCP create, memory, 4 conns × 64 pipelined",
     ("memory", "tcp", 4, 64), []),
    ("3", "TCP create, memory, 16 conns, no pipelining",
     ("memory", "tcp", 16, 1),
     [("redis 16×1", 0.6, "≥0.6× Redis unpipelined")]),
    ("4", "HTTP create, memory, 16 keep-alive conns",
     ("memory", "http", 16, 1),
     [("etcd 16", 10.0, "≥10× etcd")]),
    ("5", "HTTP create, SQLite, 16 keep-alive conns",
     ("sqlite", "http", 16, 1),
     [("etcd 16", 4.0, "≥4× etcd")]),
    ("6", "TCP create, SQLite, 16 conns × 8 pipelined",
     ("sqlite", "tcp", 16, 8),
     [("etcd 16", 12.0, "≥12× etcd")]),
]
# Scenario 3's second target: tlmd's CPU per request.
CPU_TARGET_US = {"3": 10.0}

PEER_LABELS = {
    "redis 50×16": "Redis SET EX, 50 conns × 16 pipelined",
    "redis 16×8": "Redis SET EX, 16 conns × 8 pipelined",
    "redis 16×1": "Redis SET EX, 16 conns, unpipelined",
    "etcd 16": "etcd lease grant, HTTP gateway, 16 conns",
}


class Suite:
    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.servers = Servers()
        self.redis = self.etcd = None

    def tlmd_row(self, number, storage, proto, connections, pipeline):
        log("scenario %s: tlmd %s %s %d×%d" % (number, storage, proto,
                                               connections, pipeline))
        tlmd = self.servers.add(start_tlmd(self.args, self.tmp, storage,
                                           "s" + number))
        try:
            port = tlmd.tcp_port if proto == "tcp" else tlmd.http_port
            return tlm_bench(self.args, tlmd, port, proto, connections,
                             pipeline)
        finally:
            self.servers.stop(tlmd)

    def measure_peer(self, key):
        kind, shape = key.split()
        if kind == "redis":
            if self.redis is None:
                self.redis = self.servers.add(start_redis(self.args, self.tmp))
            connections, _, pipeline = shape.partition("×")
            return redis_benchmark(self.args, self.redis, int(connections),
                                   int(pipeline))
        if self.etcd is None:
            self.etcd = self.servers.add(start_etcd(self.args, self.tmp))
        return tlm_bench(self.args, self.etcd, self.etcd.port, "etcd",
                         int(shape))

    def run(self, only):
        """The table's rows, as lists of cells. With --repeat R, R rounds
        of every chosen row, each row showing its median run."""
        chosen = [s for s in SCENARIOS if not only or s[0] in only]
        runs = {}  # "tlmd N" or a peer key -> its Results
        for round_ in range(self.args.repeat):
            for number, _, shape, peers in chosen:
                runs.setdefault("tlmd " + number, []).append(
                    self.tlmd_row(number, *shape))
                for key, _, _ in peers:  # a shared peer once a round
                    if len(runs.setdefault(key, [])) <= round_:
                        log("peer: " + PEER_LABELS[key])
                        runs[key].append(self.measure_peer(key))
        rows = []
        for number, what, _, peers in chosen:
            mine = median_run(runs["tlmd " + number])
            rows.append(tlmd_cells(number, what, mine))
            for key, target, text in peers:
                rows.append(peer_cells(key, median_run(runs[key]), mine,
                                       target, text))
        return rows


def median_run(results):
    """The run with the median ops/s (its latencies and CPU come with it)."""
    return sorted(results, key=lambda r: r.ops)[len(results) // 2]


# -- the table ------------------------------------------------------------------

HEADER = ["scenario", "server", "ops/s", "p50 ms", "p99 ms",
          "server CPU µs/req", "client CPU µs/req", "ratio tlmd/peer",
          "target", "met"]


def met(ok):
    return "met" if ok else "**not met**"


def numbers(result):
    failed = " (%d failed)" % result.failed if result.failed else ""
    return ["%.0f%s" % (result.ops, failed), "%.2f" % result.p50,
            "%.2f" % result.p99, "%.1f" % result.cpu_us,
            "%.1f" % result.client_cpu_us]


def tlmd_cells(number, what, result):
    target, verdict = "", ""
    if number in CPU_TARGET_US:
        target = "CPU <%g µs/req" % CPU_TARGET_US[number]
        verdict = met(result.cpu_us < CPU_TARGET_US[number])
    return ["%s. %s" % (number, what), "tlmd"] + numbers(result) + [
        "", target, verdict]


def peer_cells(key, result, mine, target, text):
    ratio = mine.ops / result.ops if result.ops else 0.0
    verdict = met(ratio >= target) if target is not None else ""
    return ["", PEER_LABELS[key]] + numbers(result) + [
        "%.2f×" % ratio, text, verdict]


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- idle connections -----------------------------------------------------------

def raise_fd_limit(wanted):
    """Lets this script (and the tlmd it starts) hold `wanted` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle(port, count):
    """Up to `count` connected sockets that never send (stops at an error)."""
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port),
                                                    timeout=10))
    except OSError as e:
        log("opened %d of %d idle connections: %s" % (len(sockets), count, e))
    return sockets


def idle_rows(suite, count):
    """A normal unpipelined client (1 connection) without and with `count`
    idle TCP connections open, and tlmd's RSS for both."""
    limit = raise_fd_limit(count + 1024)
    log("idle: %d connections (fd limit %d)" % (count, limit))
    tlmd = suite.servers.add(start_tlmd(
        suite.args, suite.tmp, "memory", "idle",
        ["--tcp-max-connections", str(count + 64)]))
    rows, idle = [], []
    try:
        quiet = tlm_bench(suite.args, tlmd, tlmd.tcp_port, "tcp", 1)
        rss_before = tlmd.rss_bytes()
        t0 = time.monotonic()
        idle = open_idle(tlmd.tcp_port, count)
        open_s = time.monotonic() - t0
        time.sleep(1)  # let tlmd accept them all before measuring
        rss_idle = tlmd.rss_bytes()
        log("idle: %d open, tlmd RSS %.1f MB" % (len(idle), rss_idle / 1e6))
        busy = tlm_bench(suite.args, tlmd, tlmd.tcp_port, "tcp", 1)
        log("idle: closing them")
        for n, took, rss, result in ((0, "", rss_before, quiet),
                                     (len(idle), "%.1f" % open_s, rss_idle,
                                      busy)):
            rows.append(["%d" % n, took, "%.1f" % (rss / 1e6)]
                        + numbers(result))
    finally:
        for s in idle:
            s.close()
        suite.servers.stop(tlmd)
    return rows


# -- main -----------------------------------------------------------------------

def versions():
    def first_line(command):
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  timeout=10).stdout.split("\n")[0].strip()
        except OSError:
            return "?"
    return "%s; %s" % (first_line(["redis-server", "--version"]),
                       first_line(["etcd", "--version"]))


def parse_args():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds per measured run (default 5)")
    ap.add_argument("--tlmd", default=DEFAULT_TLMD)
    ap.add_argument("--bench", default=DEFAULT_BENCH)
    ap.add_argument("--only", nargs="+", metavar="N",
                    choices=[s[0] for s in SCENARIOS],
                    help="scenarios to run (1-6; default all)")
    ap.add_argument("--idle", type=int, nargs="?", const=10000, default=0,
                    metavar="N", help="also the idle-connection scenario "
                    "with N connections (default 10000)")
    ap.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="rounds of every row; the table shows each row's "
                    "median run, so take R odd (default 1)")
    ap.add_argument("--taskset", metavar="CPUS",
                    help="run every server under taskset -c CPUS")
    return ap.parse_args()


def main():
    args = parse_args()
    for binary in (args.tlmd, args.bench):
        if not os.access(binary, os.X_OK):
            sys.exit("suite: %s is not built" % binary)
    for tool in ("redis-server", "redis-benchmark", "etcd"):
        if shutil.which(tool) is None:
            sys.exit("suite: %s is not installed" % tool)
    # SIGTERM as SystemExit: the finally below stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="tlm-suite-")
    suite = Suite(args, tmp)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load = open("/proc/loadavg").read().split()[:3]
    try:
        rows = suite.run(args.only)
        idle = idle_rows(suite, args.idle) if args.idle else []
    except KeyboardInterrupt:
        sys.exit("suite: interrupted; servers stopped")
    finally:
        suite.servers.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    pinned = "servers pinned to CPUs %s" % args.taskset if args.taskset \
        else "servers not pinned"
    print("Run %s on %d cores (%s), load average %s at the start; %g s per "
          "row, median of %d; %s." % (started, os.cpu_count(), pinned,
                                      " ".join(load), args.duration,
                                      args.repeat, versions()))
    print()
    print(markdown(HEADER, rows))
    if idle:
        print()
        print("Idle TCP connections: one client, create, unpipelined.")
        print()
        print(markdown(["idle conns", "s to open them", "tlmd RSS MB", "ops/s", "p50 ms",
                        "p99 ms", "server CPU µs/req", "client CPU µs/req"],
                       idle))


if __name__ == "__main__":
    main()
