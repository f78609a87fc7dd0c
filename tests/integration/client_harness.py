"""Helpers for the tests of the C++ client library and the ``tlm`` CLI
(test_client_*.py, test_cli.py): running ``tlm`` with a clean environment,
``tlm keep`` processes whose events (JSON lines) the tests read, and a
tlmd on fixed ports so it can be stopped and started again at the same
address.

Test modules import the fixtures by name:
``from client_harness import tlm_binary, tlm, ...``.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tlmd_harness import Tlmd, wait_until

CLI_TIMEOUT = 30.0

# Exit codes of tlm (client/cli/exit_codes.hpp).
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
EXIT_UNAUTHORIZED, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_SERVER = 4, 5, 6, 7
EXIT_PENDING, EXIT_LOST = 8, 9


@pytest.fixture(scope="session")
def tlm_binary(pytestconfig):
    path = Path(pytestconfig.getoption("--tlm")).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"tlm binary not found or not executable: {path} "
                    f"(build it with scripts/build.sh, or pass --tlm)",
                    pytrace=False)
    return path


def clean_env(home, **extra):
    """The environment for tlm: ours without any TLM_* variable, HOME in
    the test's folder (so no user config file is read), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLM_")}
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = str(home)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Cli:
    """Runs tlm against one tlmd (its TCP port unless told otherwise)."""

    def __init__(self, binary, home, addr=None):
        self.binary = str(binary)
        self.home = Path(home)
        self.addr = addr

    def run(self, *args, env=None, stdin=None, addr=True, timeout=CLI_TIMEOUT):
        argv = [self.binary]
        if addr and self.addr:
            argv += ["--addr", self.addr]
        argv += [str(a) for a in args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              env=clean_env(self.home, **(env or {})),
                              timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == EXIT_OK, \
            f"tlm {' '.join(map(str, args))} exited {r.returncode}: {r.stderr}"
        return r

    def json(self, *args, **kw):
        return json.loads(self.ok("--json", *args, **kw).stdout)


@pytest.fixture
def cli_for(tlm_binary, tmp_path):
    """cli_for(tlmd, transport="tcp") -> Cli aimed at that daemon."""
    def make(daemon, transport="tcp"):
        port = daemon.tcp_port if transport == "tcp" else daemon.http_port
        return Cli(tlm_binary, tmp_path, f"{transport}://127.0.0.1:{port}")
    return make


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_port_tlmd(tlmd_factory, tmp_path, *args, name="fixed", config=None):
    """A tlmd on ports chosen now, with SQLite storage, so a restart
    (stop(), start()) keeps both its address and its leases."""
    argv = ["--bind", "127.0.0.1", "--http-port", str(free_port()),
            "--tcp-port", str(free_port()),
            "--storage", f"sqlite:{tmp_path / (name + '.db')}", *map(str, args)]
    if config is not None:
        argv += ["--config", str(config)]
    return tlmd_factory(name=name, use_defaults=False, args=argv)


class Keeper:
    """One `tlm keep` process writing its events to a file."""

    def __init__(self, cli, tmp_path, *args, name="keep", command=None):
        self.events_path = Path(tmp_path) / f"{name}.events.jsonl"
        self.stderr_path = Path(tmp_path) / f"{name}.stderr.log"
        argv = [cli.binary, "--addr", cli.addr, "keep",
                "--events", str(self.events_path), *map(str, args)]
        if command:
            argv += ["--", *command]
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=self._stderr,
                                     env=clean_env(cli.home))

    def events(self):
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        # The last line may be half written.
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                break
        return out

    def wait_event(self, pred, timeout=20.0, what="event"):
        def found():
            assert self.proc.poll() is None or any(pred(e) for e in self.events()), \
                f"tlm keep exited ({self.proc.returncode}) before {what}: " \
                f"{self.events()}\n{self.stderr()}"
            return next((e for e in self.events() if pred(e)), None)
        return wait_until(found, timeout, interval=0.05, what=what)

    def wait_count(self, kind, n, timeout=20.0):
        return wait_until(lambda: len([e for e in self.events()
                                       if e["event"] == kind]) >= n or None,
                          timeout, interval=0.05, what=f"{n} {kind} events")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        finally:
            self._stderr.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture
def keepers(request):
    """keepers(cli, tmp_path, *args, name=..., command=...) -> Keeper; all
    are killed at teardown, and a failing test shows their stderr."""
    made = []

    def start(*args, **kw):
        k = Keeper(*args, **kw)
        made.append(k)
        return k

    yield start
    for k in made:
        k.kill()
    if getattr(request.node, "_tlmd_call_failed", False):
        for k in made:
            print(f"--- {k.stderr_path.name} ---\n{k.stderr()}")
