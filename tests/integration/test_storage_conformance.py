"""The storage conformance suite (the doctest suite ``storage_conformance``
of tlm_unit_tests, next to tlmd in the build) run on memory, sqlite and
postgres side by side: this file starts a real PostgreSQL 15, names it to
the suite in TLM_TEST_POSTGRES (the password in a PGPASSFILE), and checks
that every case passed and that the postgres cases did run (each makes its
own database). About 5 s.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest


def unit_tests_binary(tlmd_binary):
    path = Path(tlmd_binary).parent / "tlm_unit_tests"
    if not path.is_file():
        pytest.fail(f"tlm_unit_tests not found next to tlmd: {path}", pytrace=False)
    return path


def write_pgpass(path, srv):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{srv.host}:{srv.port}:*:{srv.admin_user}:{srv.admin_password}\n")
    return str(path)


def test_storage_conformance(postgres_server, tlmd_binary, tmp_path):
    srv = postgres_server
    env = {"PATH": "/usr/bin:/bin",
           "TLM_TEST_POSTGRES": f"postgresql://{srv.admin_user}@{srv.host}:{srv.port}",
           "PGPASSFILE": write_pgpass(tmp_path / "pgpass", srv)}
    run = subprocess.run(
        [str(unit_tests_binary(tlmd_binary)), "--test-suite=storage_conformance",
         "--no-colors"],
        env=env, capture_output=True, text=True, timeout=240)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"storage conformance cases failed:\n{report}"
    found = re.search(r"test cases: +(\d+) \| +(\d+) passed \| +0 failed", report)
    assert found and int(found.group(1)) >= 8 and found.group(1) == found.group(2), report
    # Every case made at least one database of its own: postgres was in.
    made = int(srv.sql("SELECT count(*) FROM pg_database "
                       "WHERE datname LIKE 'tlm_conf_%'"))
    assert made >= int(found.group(1)), report
