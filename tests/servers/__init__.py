"""Real servers (InfluxDB 1.x, Redis, PostgreSQL 15) for the cloud-backend integration
tests, started on loopback on free ports in temp dirs.

Import as the package ``servers`` with ``<repo>/tests`` on sys.path; see
conftest_fixtures.py for the pytest fixtures and how to use them.
Install the servers with scripts/install-test-servers.sh.
"""

from ._common import ServerError, ServerNotInstalled, free_ports, random_password  # noqa: F401
from .influxdb1 import Influxd1  # noqa: F401
from .postgres import PostgresServer  # noqa: F401
from .redis import (RedisAuthError, RedisConnection, RedisReplyError,  # noqa: F401
                    RedisServer)
