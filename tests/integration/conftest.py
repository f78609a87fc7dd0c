"""pytest plumbing and fixtures for the tlmd integration tests.

The helper classes (Tlmd, TcpClient, Api, HTTP helpers, contract checks)
live in tlmd_harness.py next to this file; tests import them from there.

Every test starts its own tlmd process(es) in its own tmp_path, with
``--http-port 0 --tcp-port 0`` so that tests can run in parallel.

Main entry points:

* ``tlmd_factory(**kw)`` -> ``Tlmd``: start a daemon (memory storage by
  default).  Every daemon started through the factory is killed at teardown
  and its stderr log is attached to the report of a failing test.
* ``tlmd``: a ready daemon with default settings.
* ``transport``: parametrizes a test over ``"tcp"`` and ``"http"``.
* ``api``: an ``Api`` client for ``tlmd`` over ``transport``.
* ``Tlmd.tcp()`` -> ``TcpClient`` (line-oriented JSON client),
  ``Tlmd.http(method, path, body, headers)`` -> ``HttpResponse``,
  ``Tlmd.action(transport, obj)`` -> response dict,
  ``Tlmd.api(transport)`` -> ``Api``.
"""

import os
import secrets
import sys
from pathlib import Path

import pytest

from tlmd_harness import *  # noqa: F401,F403  (helpers re-exported for convenience)
from tlmd_harness import Tlmd

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TLMD = REPO_ROOT / "build" / "bin" / "tlmd"
DEFAULT_TLM = REPO_ROOT / "build" / "bin" / "tlm"

# Real servers (influxd 1.x, redis-server) for the cloud-backend tests come
# from <repo>/tests/servers, the InfluxDB 2.x fake from <repo>/tests/fakes.
# pytest_plugins is allowed here because this is the rootdir's conftest
# (tests/integration has its own pytest.ini).
TESTS_DIR = REPO_ROOT / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
pytest_plugins = ["servers.conftest_fixtures"]


# ---------------------------------------------------------------------------
# pytest plumbing
# ---------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--tlmd", action="store", default=str(DEFAULT_TLMD),
                     help="path to the tlmd binary under test "
                          "(default: <repo>/build/bin/tlmd)")
    # The client tests (test_client_*.py, test_cli.py; client_harness.py).
    parser.addoption("--tlm", action="store", default=str(DEFAULT_TLM),
                     help="path to the tlm client binary; the client's live "
                          "test binary is found next to it "
                          "(default: <repo>/build/bin/tlm)")


@pytest.fixture(scope="session")
def tlmd_binary(pytestconfig):
    path = Path(pytestconfig.getoption("--tlmd")).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"tlmd binary not found or not executable: {path}",
                    pytrace=False)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._tlmd_call_failed = rep.failed
    if rep.failed:
        for inst in getattr(item, "_tlmd_instances", []):
            rep.sections.append((f"tlmd stderr [{inst.name}] ({inst.status()})",
                                 inst.read_log()))
        for fake in list(_live_influxdb2_fakes):
            rep.sections.append((f"influxdb2 fake {fake.url} (fault, last requests)",
                                 _fake_summary(fake)))


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def tlmd_factory(tlmd_binary, tmp_path, request):
    instances = []
    request.node._tlmd_instances = instances

    def factory(start=True, name=None, **kw):
        inst = Tlmd(tlmd_binary, tmp_path, name=name or f"tlmd{len(instances)}", **kw)
        instances.append(inst)
        if start:
            inst.start()
        return inst

    yield factory
    died = [(inst.name, inst.proc.returncode) for inst in instances
            if inst.exited_unexpectedly()]
    for inst in instances:
        inst.kill()
    if died and not getattr(request.node, "_tlmd_call_failed", False):
        pytest.fail(f"tlmd exited on its own during the test (exit status): {died}",
                    pytrace=False)


@pytest.fixture
def tlmd(tlmd_factory):
    return tlmd_factory()


@pytest.fixture(params=["tcp", "http"])
def transport(request):
    return request.param


@pytest.fixture
def api(tlmd, transport):
    a = tlmd.api(transport)
    yield a
    a.close()


# ---------------------------------------------------------------------------
# InfluxDB 2.x fake (tests/fakes/influxdb2_fake.py)
# ---------------------------------------------------------------------------

_live_influxdb2_fakes = []


def _fake_summary(fake, last=30):
    lines = [f"running={fake.running} fault={fake.fault}"]
    lines += [f"{r['method']} {r['path']} -> {r['status']}"
              + (f" (fault {r['fault']})" if r.get("fault") else "")
              for r in fake.requests()[-last:]]
    return "\n".join(lines)


def _make_influxdb2_fake():
    from fakes.influxdb2_fake import FakeInfluxDB2
    fake = FakeInfluxDB2(secrets.token_urlsafe(32), "acme")
    fake.start()
    _live_influxdb2_fakes.append(fake)
    return fake


def _drop_influxdb2_fake(fake):
    try:
        fake.stop()
    finally:
        _live_influxdb2_fakes.remove(fake)


@pytest.fixture(scope="module")
def influxdb2_fake_module():
    """A started in-process FakeInfluxDB2 (admin token random, org "acme")
    shared by a test module.  Tests that inject faults or stop it must put
    it back (clear_fault(), start())."""
    fake = _make_influxdb2_fake()
    yield fake
    _drop_influxdb2_fake(fake)


@pytest.fixture
def influxdb2_fake():
    """A started FakeInfluxDB2 for one test."""
    fake = _make_influxdb2_fake()
    yield fake
    _drop_influxdb2_fake(fake)
