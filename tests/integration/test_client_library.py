"""The C++ client library (client/) against the real tlmd: every typed
call, failures with their codes, the list pager across pages, pipelined
futures, a server that is not there, TLS refused until issue 13, and API
keys. The checks themselves are doctest cases in
client/tests/live_test.cpp (binary tlm_client_live_tests, next to tlm);
this module starts the daemon and runs them over TCP and HTTP, with and
without API keys. About 5 s.
"""

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from client_harness import clean_env, free_port, tlm_binary  # noqa: F401
from tlmd_harness import write_key_file


@pytest.fixture(scope="session")
def live_tests(tlm_binary):
    path = Path(tlm_binary).parent / "tlm_client_live_tests"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: build the project (scripts/build.sh)",
                    pytrace=False)
    return path


@pytest.mark.parametrize("transport", ["tcp", "http"])
@pytest.mark.parametrize("with_key", [False, True], ids=["open", "api_key"])
def test_library_against_tlmd(live_tests, tlmd_factory, tmp_path, transport,
                              with_key):
    key = secrets.token_urlsafe(24)
    key_file = write_key_file(tmp_path / "keys", [key]) if with_key else None
    daemon = tlmd_factory(api_key_file=key_file)
    port = daemon.tcp_port if transport == "tcp" else daemon.http_port
    env = clean_env(tmp_path,
                    TLM_TEST_ADDR=f"{transport}://127.0.0.1:{port}",
                    TLM_TEST_DOWN_ADDR=f"{transport}://127.0.0.1:{free_port()}")
    if with_key:
        env["TLM_TEST_API_KEY"] = key
    r = subprocess.run([str(live_tests)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"live tests failed:\n{r.stdout}\n{r.stderr}"
    assert "Status: SUCCESS" in r.stdout, r.stdout
    # The key never reaches the daemon's log.
    assert key not in daemon.read_log()
