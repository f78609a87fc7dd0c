"""Fixtures for the self-tests in this directory (test_servers.py)."""

pytest_plugins = ["servers.conftest_fixtures"]
