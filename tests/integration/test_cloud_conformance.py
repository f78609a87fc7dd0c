"""The cloud backend conformance suite (issue 10), run against every backend
with its real service: the InfluxDB 2.x contract fake, a real influxd 1.x
and a real redis-server, each on a free loopback port, and ``local``, which
needs none.

The cases are C++ (tests/unit/cloud_conformance_test.cpp, the doctest suite
``cloud_conformance`` in tlm_unit_tests, next to tlmd in the build): they
drive each backend through ``make_cloud_backend`` and the ``cloud_backend``
interface, the code that serves clients.  This file starts the servers,
writes the backend's entry of the table (a working configuration, a wrong
admin credential, a port nothing listens on, a server that accepts and
never answers) and runs the suite on it; a failing case fails the test.

A new backend gets the suite by adding one line to BACKENDS.  About 10 s.
"""

import json
import re
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from backends_harness import RedisEnv, V1Env, V2Env, write_secret
from servers import free_ports

SILENT_TIMEOUT_MS = 300


def http_at(port):
    return {"url": f"http://127.0.0.1:{port}"}


def host_port_at(port):
    return {"host": "127.0.0.1", "port": port}


@dataclass
class Backend:
    type: str
    #: pytest fixture of the running service, or None
    server: Optional[str] = None
    #: BackendEnv class that configures tlmd for that service
    env: Optional[Callable] = None
    #: settings that point the backend at another port
    address: Optional[Callable] = None
    #: the setting naming the admin secret's file
    secret_setting: Optional[str] = None
    #: options of a create that must succeed
    create_options: Optional[dict] = None


# One line per backend type.
BACKENDS = [
    Backend("local"),
    Backend("influxdb", "influxdb2_fake_module", V2Env, http_at, "token_file"),
    Backend("influxdb1", "influxd1_module", V1Env, http_at, "admin_password_file"),
    Backend("redis_acl", "redis_server_module", RedisEnv, host_port_at,
            "admin_password_file"),
]


class SilentServer:
    """Accepts connections on loopback and never answers: every call of a
    backend pointed at it must end by its own timeout."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def silent_server():
    srv = SilentServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance-secrets")


def entry_for(backend, request, secrets_dir, silent_port):
    """The backend's line of the C++ suite's table."""
    if backend.server is None:
        return {"type": backend.type, "settings": {"type": backend.type},
                "create_options": backend.create_options or {}}
    env = backend.env(request.getfixturevalue(backend.server), secrets_dir)
    wrong = write_secret(Path(secrets_dir) / f"{backend.type}-wrong-secret",
                         "not-the-admin-secret")
    dead_port, = free_ports(1)
    return {
        "type": backend.type,
        "settings": env.settings(),
        "create_options": backend.create_options or {},
        "bad_credential": env.settings(**{backend.secret_setting: wrong}),
        "unreachable": env.settings(**backend.address(dead_port)),
        "silent": env.settings(timeout_ms=SILENT_TIMEOUT_MS,
                               **backend.address(silent_port)),
    }


def unit_tests_binary(tlmd_binary):
    path = Path(tlmd_binary).parent / "tlm_unit_tests"
    if not path.is_file():
        pytest.fail(f"tlm_unit_tests not found next to tlmd: {path}", pytrace=False)
    return path


@pytest.mark.parametrize("backend", BACKENDS, ids=[b.type for b in BACKENDS])
def test_cloud_conformance(backend, request, tlmd_binary, secrets_dir,
                           silent_server, tmp_path):
    table = tmp_path / "conformance.json"
    table.write_text(json.dumps(
        [entry_for(backend, request, secrets_dir, silent_server.port)], indent=2))
    run = subprocess.run(
        [str(unit_tests_binary(tlmd_binary)), "--test-suite=cloud_conformance",
         "--no-colors"],
        env={"TLM_CLOUD_CONFORMANCE": str(table), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"conformance cases failed for {backend.type}:\n{report}"
    # The suite must have run, not filtered everything away.
    assert re.search(r"test cases: +8 \| +8 passed \| +0 failed", report), report
