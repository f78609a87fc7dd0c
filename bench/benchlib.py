"""Helpers shared by bench/restart.py and bench/memory.py (stdlib only).

- Tlmd: starts build/bin/tlmd on fixed free loopback ports, times the exec
  and the `tlmd ready http=<port> tcp=<port>` line, reads its memory from
  /proc, and stops it with SIGTERM (SIGKILL only if it hangs).
- fill(): creates leases fast with build/bin/tlm_bench --fill.
- Client comes from bench/expiry.py: pipelined JSON lines over TCP.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from expiry import Client  # noqa: F401  (re-exported for the benchmarks)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TLMD = os.path.normpath(
    os.path.join(HERE, "..", "build", "bin", "tlmd"))
DEFAULT_BENCH = os.path.normpath(
    os.path.join(HERE, "..", "build", "bin", "tlm_bench"))


def free_port():
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_on_sigterm():
    """Turns SIGTERM into SystemExit, so `finally` blocks stop our tlmd."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def connect(port, timeout=30.0):
    client = Client(port)
    client.sock.settimeout(timeout)
    return client


class Tlmd:
    """One tlmd process on 127.0.0.1 with ports chosen up front, so a client
    can poll them before the ready line appears."""

    def __init__(self, tlmd, storage, log_path, extra=()):
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.log_path = log_path
        self.ready_at = None  # time.monotonic() of the ready line
        self.ready_line = None
        self._ready = threading.Event()
        self.log = open(log_path, "ab")
        args = [tlmd, "--bind", "127.0.0.1",
                "--http-port", str(self.http_port),
                "--tcp-port", str(self.tcp_port), "--storage", storage,
                "--max-ttl", "86400000"] + list(extra)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("tlmd ready") and self.ready_at is None:
                self.ready_at = time.monotonic()
                self.ready_line = line
                self._ready.set()
        self._ready.set()  # stdout closed: tlmd exited

    def wait_ready(self, timeout):
        """Seconds from exec to the ready line; exits with tlmd's last log
        lines if it never comes."""
        self._ready.wait(timeout)
        if self.ready_at is None:
            tail = self.log_tail()
            self.kill()
            sys.exit("tlmd printed no ready line within %.0f s; its log:\n%s"
                     % (timeout, tail))
        return self.ready_at - self.started_at

    def log_tail(self, lines=5):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(
                    errors="replace")
        except OSError:
            return ""

    def memory(self):
        """VmRSS, VmHWM and the anonymous / file-backed split, in bytes.

        /proc/<pid>/status gives VmRSS = RssAnon + RssFile + RssShmem;
        smaps_rollup gives the exact Rss and Anonymous sums (slower)."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
        try:
            with open("/proc/%d/smaps_rollup" % self.pid) as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("Rss", "Anonymous", "AnonHugePages"):
                        out["rollup_" + key] = int(rest.split()[0]) * 1024
        except OSError:
            pass
        return out

    def stop(self, timeout=60.0):
        """SIGTERM and wait; seconds until exit. A tlmd still running after
        `timeout` is killed and that is an error."""
        if self.proc.poll() is not None:
            self.log.close()
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            sys.exit("tlmd still running %.0f s after SIGTERM; killed it"
                     % timeout)
        finally:
            self.log.close()
        if code != 0:
            sys.exit("tlmd exited with status %d after SIGTERM; its log:\n%s"
                     % (code, self.log_tail()))
        return time.monotonic() - t0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()


def fill(bench, tcp_port, count, ttl_ms, timeout_s):
    """Creates exactly `count` leases with ttl `ttl_ms` (no tags, no meta)
    through tlm_bench: --fill count-1, then a measured run of one create
    with the same ttl. Returns the seconds it took."""
    if count <= 0:
        return 0.0
    args = [bench, "--port", str(tcp_port), "--proto", "tcp",
            "--fill", str(count - 1), "--fill-ttl", str(ttl_ms),
            "--fill-timeout-s", str(timeout_s),
            "--action", "create", "--ttl", str(ttl_ms),
            "--connections", "1", "--requests", "1", "--duration-s", "5"]
    t0 = time.monotonic()
    try:
        run = subprocess.run(args, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:
        sys.exit("tlm_bench did not finish within %.0f s" % (timeout_s + 30))
    took = time.monotonic() - t0
    if run.returncode != 0:
        sys.exit("tlm_bench failed (status %d):\n%s"
                 % (run.returncode, run.stdout))
    return took


def mb(n):
    return "%.1f MB" % (n / 1e6)
