"""Operator mistakes are refused, not absorbed (issue 8): a second daemon on
the same ports or the same SQLite file, a storage path whose folder does not
exist, and config files with a syntax error, a wrong type or an unknown
backend type. Each refusal exits non-zero before the ready line, with a
message that names what to fix."""

import json

import pytest

from tlmd_harness import READY_RE


def _daemon(tlmd_factory, http_port=0, tcp_port=0, storage="memory",
            start=True, **kw):
    """A daemon with explicit ports and storage (no harness defaults, so a
    port or storage given here is the only one on the command line)."""
    args = ["--bind", "127.0.0.1", "--http-port", str(http_port),
            "--tcp-port", str(tcp_port)]
    if storage is not None:
        args += ["--storage", storage]
    return tlmd_factory(start=start, use_defaults=False, args=args, **kw)


def _assert_serves(d, leases):
    """d answers on fresh TCP and HTTP connections and knows every lease."""
    for transport in ("tcp", "http"):
        for _ in range(4):  # fresh connections: none may reach another process
            api = d.api(transport)
            for lease in leases:
                assert api.get(lease["id"])["lease"]["id"] == lease["id"]
            api.close()


def _refused(d):
    rc, stderr = d.start_expect_failure()
    assert rc != 0, stderr
    return stderr


# -- a second daemon ---------------------------------------------------------

@pytest.mark.parametrize("shared", ["tcp", "http"])
def test_second_daemon_on_the_same_port_is_refused(tlmd_factory, shared):
    first = _daemon(tlmd_factory)
    lease = first.api(shared).create(ttl=60000)
    port = first.tcp_port if shared == "tcp" else first.http_port
    second = _daemon(tlmd_factory, start=False, **{f"{shared}_port": port})
    stderr = _refused(second)
    assert f"the {shared.upper()} port {port} on 127.0.0.1 is in use" in stderr
    _assert_serves(first, [lease])


def test_second_daemon_on_the_same_database_is_refused(tlmd_factory, tmp_path):
    db = tmp_path / "shared.db"
    first = _daemon(tlmd_factory, storage=f"sqlite:{db}")
    lease = first.api("tcp").create(ttl=60000)
    second = _daemon(tlmd_factory, storage=f"sqlite:{db}", start=False)
    stderr = _refused(second)
    assert str(db) in stderr and "in use" in stderr, stderr
    assert "loaded" not in stderr, "the refused daemon must not load leases"
    _assert_serves(first, [lease])
    # The lock lives as long as the first process, and no longer.
    assert first.stop() == 0
    second.start()
    _assert_serves(second, [lease])


def test_a_refused_port_stops_the_start_before_any_lease_is_loaded(
        tlmd_factory, tmp_path):
    """The ports are taken before the storage is opened: a second daemon
    with its own database, pointed at a port in use by mistake, neither
    loads nor revokes that database's leases, nor creates a new one."""
    first = _daemon(tlmd_factory)
    own = tmp_path / "own.db"
    other = _daemon(tlmd_factory, storage=f"sqlite:{own}")
    lease = other.api("tcp").create(ttl=60000)
    assert other.stop() == 0
    second = _daemon(tlmd_factory, storage=f"sqlite:{own}", start=False,
                     tcp_port=first.tcp_port)
    stderr = _refused(second)
    assert "is in use" in stderr and "loaded" not in stderr, stderr
    fresh = tmp_path / "fresh.db"
    third = _daemon(tlmd_factory, storage=f"sqlite:{fresh}", start=False,
                    http_port=first.http_port)
    stderr = _refused(third)
    assert not fresh.exists() and "created" not in stderr, stderr
    # the lease was left alone: a proper start still serves it
    again = _daemon(tlmd_factory, storage=f"sqlite:{own}")
    _assert_serves(again, [lease])


def test_lock_is_released_when_the_holder_is_killed(tlmd_factory, tmp_path):
    db = tmp_path / "killed.db"
    first = _daemon(tlmd_factory, storage=f"sqlite:{db}")
    lease = first.api("tcp").create(ttl=60000)
    first.kill()
    second = _daemon(tlmd_factory, storage=f"sqlite:{db}")
    _assert_serves(second, [lease])


# -- the storage path --------------------------------------------------------

def test_missing_database_folder_is_refused_and_not_created(tlmd_factory,
                                                            tmp_path):
    folder = tmp_path / "no" / "such"
    d = _daemon(tlmd_factory, storage=f"sqlite:{folder / 'tlm.db'}",
                start=False)
    stderr = _refused(d)
    assert str(folder) in stderr and "does not exist" in stderr, stderr
    assert not (tmp_path / "no").exists(), "tlmd created the missing folder"


def test_new_database_is_announced_and_an_existing_one_is_not(tlmd_factory,
                                                              tmp_path):
    db = tmp_path / "fresh.db"
    d = _daemon(tlmd_factory, storage=f"sqlite:{db}")
    ready = d.stdout_lines[0]
    assert ready == (f"tlmd ready http={d.http_port} tcp={d.tcp_port} "
                     f"storage=new:sqlite:{db}"), ready
    assert f"created a new, empty database at {db}" in d.log_path.read_text()
    d.api("tcp").create(ttl=60000)
    assert d.stop() == 0
    d.start()
    ready = d.stdout_lines[0]
    assert ready == (f"tlmd ready http={d.http_port} tcp={d.tcp_port} "
                     f"storage=sqlite:{db}"), ready
    assert "created a new" not in d.log_path.read_text()  # this start's only


def test_default_storage_creates_only_its_own_folder(tlmd_factory, tmp_path):
    # The built-in default `sqlite:./data/tlm.db` is the one exception.
    d = _daemon(tlmd_factory, storage=None)
    assert (tmp_path / "data" / "tlm.db").is_file()
    assert d.stdout_lines[0].endswith(" storage=new:sqlite:./data/tlm.db")
    assert (f"created a new, empty database at ./data/tlm.db "
            f"({tmp_path / 'data' / 'tlm.db'})") in d.log_path.read_text()
    assert READY_RE.match(d.stdout_lines[0])


# -- config files ------------------------------------------------------------

def _config(tmp_path, text):
    path = tmp_path / "tlmd.json"
    path.write_text(text)
    return path


def _refused_config(tlmd_factory, path):
    d = tlmd_factory(start=False, use_defaults=False, config=path)
    return _refused(d)


def test_config_syntax_error_gives_line_and_column(tlmd_factory, tmp_path):
    # A missing comma after the first value: the parser stops at line 3,
    # at the end of the unexpected "tcp_port".
    path = _config(tmp_path, '{\n  "http_port": 0\n  "tcp_port": 0\n}\n')
    stderr = _refused_config(tlmd_factory, path)
    assert "line 3, column 12" in stderr, stderr
    assert str(path) in stderr, stderr


def test_config_wrong_type_names_the_expected_type(tlmd_factory, tmp_path):
    path = _config(tmp_path, json.dumps({"http_port": "3666"}))
    stderr = _refused_config(tlmd_factory, path)
    assert "http_port must be an integer (got a string)" in stderr, stderr


def test_config_unknown_backend_type_is_reported_as_such(tlmd_factory,
                                                         tmp_path):
    path = _config(tmp_path, json.dumps({
        "storage": "memory", "backends": {"x": {"type": "influx"}}}))
    stderr = _refused_config(tlmd_factory, path)
    assert "backends.x.type 'influx' is not a backend type" in stderr, stderr
    for known in ("local", "influxdb", "influxdb1", "redis_acl"):
        assert known in stderr
    assert "default_backend" not in stderr, stderr
