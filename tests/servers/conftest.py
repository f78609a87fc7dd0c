"""Fixtures for the self-tests in this directory (test_servers.py).

Imported by name rather than with pytest_plugins, so that this conftest
also works when pytest's rootdir is above this directory (pytest_plugins
is only allowed in a top-level conftest)."""

from .conftest_fixtures import (  # noqa: F401
    influxd1, influxd1_factory, influxd1_module,
    redis_server, redis_server_factory, redis_server_module,
    postgres_server, postgres_server_factory, postgres_server_module,
    pytest_runtest_makereport,
)
