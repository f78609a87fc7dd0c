"""pytest fixtures that run REAL servers on loopback for the cloud-backend
integration tests: InfluxDB 1.x (``influxd``) and Redis (``redis-server``),
each on free ports with all its state in a temp dir, stopped at teardown.

Use from another test directory (e.g. tests/integration/conftest.py, the
top-level conftest of its pytest.ini rootdir):

    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # <repo>/tests
    pytest_plugins = ["servers.conftest_fixtures"]

and in test modules, for the classes and errors:

    from servers import Influxd1, RedisServer, RedisReplyError, RedisAuthError

(A conftest.py that is not at its rootdir may not set pytest_plugins: import
the fixtures by name instead, ``from servers.conftest_fixtures import
influxd1, redis_server``; the server-log report hook then is not active.)

Fixtures:

* ``influxd1`` / ``influxd1_module``: a started ``Influxd1`` (function /
  module scope) with admin user ``admin`` (random password) and database
  ``tlm_test``.
* ``redis_server`` / ``redis_server_module``: a started ``RedisServer`` with
  ACL user ``admin`` (random password, all rights); user ``default`` is off.
* ``postgres_server`` / ``postgres_server_module``: a started
  ``PostgresServer`` (PostgreSQL 15) with superuser ``admin`` (random
  password, scram-sha-256 for every login).
* ``influxd1_factory`` / ``redis_server_factory`` / ``postgres_server_factory``: ``factory(start=True,
  **kw)`` for tests that need several servers or one not yet started.

If a server binary is missing the fixture FAILS (never skips), naming
scripts/install-test-servers.sh.  When a test fails, the logs of the
servers still running are attached to its report.
"""

import pytest

from ._common import ServerNotInstalled
from .influxdb1 import Influxd1
from .postgres import PostgresServer
from .redis import RedisServer

_active = []   # servers created by these fixtures and not yet torn down


def _make(cls, base_dir, start=True, made=None, **kw):
    missing = None
    try:
        srv = cls(base_dir, **kw)
    except ServerNotInstalled as e:
        missing = str(e)
    if missing:
        pytest.fail(missing, pytrace=False)
    _active.append(srv)
    if made is not None:
        made.append(srv)    # torn down even if start() fails
    if start:
        try:
            srv.start()
        except BaseException:
            if made is None:
                _teardown(srv)
            raise
    return srv


def _teardown(srv):
    try:
        srv.close()
    finally:
        if srv in _active:
            _active.remove(srv)


def _factory(cls, tmp_dir, default_name):
    made = []

    def factory(start=True, name=None, **kw):
        nm = name or (default_name if not made else f"{default_name}_{len(made)}")
        return _make(cls, tmp_dir, start=start, made=made, name=nm, **kw)

    return factory, made


# -- InfluxDB 1.x -------------------------------------------------------------

@pytest.fixture
def influxd1_factory(tmp_path):
    factory, made = _factory(Influxd1, tmp_path, "influxd1")
    yield factory
    for srv in made:
        _teardown(srv)


@pytest.fixture
def influxd1(influxd1_factory):
    return influxd1_factory()


@pytest.fixture(scope="module")
def influxd1_module(tmp_path_factory):
    srv = _make(Influxd1, tmp_path_factory.mktemp("influxd1"))
    yield srv
    _teardown(srv)


# -- Redis ----------------------------------------------------------------------

@pytest.fixture
def redis_server_factory(tmp_path):
    factory, made = _factory(RedisServer, tmp_path, "redis")
    yield factory
    for srv in made:
        _teardown(srv)


@pytest.fixture
def redis_server(redis_server_factory):
    return redis_server_factory()


@pytest.fixture(scope="module")
def redis_server_module(tmp_path_factory):
    srv = _make(RedisServer, tmp_path_factory.mktemp("redis"))
    yield srv
    _teardown(srv)


# -- PostgreSQL ---------------------------------------------------------------

@pytest.fixture
def postgres_server_factory(tmp_path):
    factory, made = _factory(PostgresServer, tmp_path, "postgres")
    yield factory
    for srv in made:
        _teardown(srv)


@pytest.fixture
def postgres_server(postgres_server_factory):
    return postgres_server_factory()


@pytest.fixture(scope="module")
def postgres_server_module(tmp_path_factory):
    srv = _make(PostgresServer, tmp_path_factory.mktemp("postgres"))
    yield srv
    _teardown(srv)


# -- server logs in the report of a failing test ----------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for srv in list(_active):
            rep.sections.append((f"server log [{srv!r}]", srv.log_tail(8000)))
