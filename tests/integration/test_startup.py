"""Command line, config file and startup refusal."""

import json
import subprocess

import pytest

from tlmd_harness import write_key_file

FLAGS = ["--bind", "--http-port", "--tcp-port", "--storage", "--default-ttl",
         "--min-ttl", "--max-ttl", "--api-key-file", "--config", "--help"]


def test_help(tlmd_binary):
    p = subprocess.run([str(tlmd_binary), "--help"], capture_output=True, timeout=15)
    assert p.returncode == 0, p
    text = (p.stdout + p.stderr).decode("utf-8", "replace")
    missing = [f for f in FLAGS if f not in text]
    assert not missing, f"--help does not document {missing}:\n{text}"


def test_equals_form_flags(tlmd_factory, tmp_path):
    d = tlmd_factory(use_defaults=False, args=[
        "--bind=127.0.0.1", "--http-port=0", "--tcp-port=0",
        f"--storage=sqlite:{tmp_path / 'eq.db'}", "--default-ttl=7000",
        "--min-ttl=2000", "--max-ttl=20000"])
    api = d.api("tcp")
    assert api.create()["ttl"] == 7000
    api.fail({"action": "create", "options": {"ttl": 1999}}, "invalid_request")
    api.fail({"action": "create", "options": {"ttl": 20001}}, "invalid_request")
    assert api.create(ttl=20000)["ttl"] == 20000
    api.close()


def _write_config(tmp_path, **overrides):
    cfg = {
        "bind": "127.0.0.1",
        "http_port": 0,
        "tcp_port": 0,
        "storage": f"sqlite:{tmp_path / 'cfg.db'}",
        "default_backend": "local",
        "default_ttl_ms": 8000,
        "min_ttl_ms": 3000,
        "max_ttl_ms": 30000,
        "backends": {"local": {"type": "local"}},
    }
    cfg.update(overrides)
    path = tmp_path / "tlmd.json"
    path.write_text(json.dumps(cfg))
    return path


def test_config_file(tlmd_factory, tmp_path):
    d = tlmd_factory(use_defaults=False, config=_write_config(tmp_path))
    api = d.api("http")
    lease = api.create()
    assert lease["ttl"] == 8000 and lease["backend"] == "local"
    api.fail({"action": "create", "options": {"ttl": 2999}}, "invalid_request")
    api.fail({"action": "create", "options": {"ttl": 30001}}, "invalid_request")
    assert (tmp_path / "cfg.db").exists(), "config storage path not used"
    assert d.stop() == 0
    d.start()
    assert api.get(lease["id"])["lease"] == lease


def test_config_file_with_api_keys(tlmd_factory, tmp_path):
    keyfile = write_key_file(tmp_path / "keys", ["cfg-key-0123456789"])
    d = tlmd_factory(use_defaults=False,
                     config=_write_config(tmp_path, api_key_file=keyfile))
    r = d.http("POST", "/v1/actions", {"action": "health"})
    assert r.status == 401
    r = d.http("POST", "/v1/actions", {"action": "health"},
               {"Authorization": "Bearer cfg-key-0123456789"})
    assert r.status == 200


@pytest.mark.parametrize("where", ["top", "backend"])
def test_config_unknown_key_refuses(tlmd_factory, tmp_path, where):
    if where == "top":
        path = _write_config(tmp_path, bogus_setting_xyz=1)
        key = "bogus_setting_xyz"
    else:
        path = _write_config(tmp_path, backends={"local": {"type": "local",
                                                           "frobnicity_qq": True}})
        key = "frobnicity_qq"
    d = tlmd_factory(start=False, use_defaults=False, config=path)
    rc, stderr = d.start_expect_failure()
    assert rc != 0
    assert key in stderr, f"error message does not name {key!r}:\n{stderr}"


def test_config_invalid_json_refuses(tlmd_factory, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"bind": "127.0.0.1", ')
    d = tlmd_factory(start=False, use_defaults=False, config=path)
    rc, _ = d.start_expect_failure()
    assert rc != 0


def test_missing_config_file_refuses(tlmd_factory, tmp_path):
    d = tlmd_factory(start=False, use_defaults=False, config=tmp_path / "nope.json")
    rc, _ = d.start_expect_failure()
    assert rc != 0


def test_nonloopback_bind_without_keys_refuses(tlmd_factory):
    d = tlmd_factory(start=False, bind="0.0.0.0")
    rc, stderr = d.start_expect_failure()
    assert rc != 0
    assert stderr.strip(), "refusal should be explained on stderr"


def test_nonloopback_bind_in_config_without_keys_refuses(tlmd_factory, tmp_path):
    d = tlmd_factory(start=False, use_defaults=False,
                     config=_write_config(tmp_path, bind="0.0.0.0"))
    rc, _ = d.start_expect_failure()
    assert rc != 0


def test_empty_key_file_counts_as_no_keys(tlmd_factory, tmp_path):
    keyfile = tmp_path / "empty-keys"
    keyfile.write_text("")
    d = tlmd_factory(start=False, bind="0.0.0.0", api_key_file=keyfile)
    rc, _ = d.start_expect_failure()
    assert rc != 0


@pytest.mark.parametrize("args", [
    ["--min-ttl", "5000", "--max-ttl", "1000"],
    ["--default-ttl", "500"],
    ["--http-port", "notaport"],
    ["--no-such-flag"],
])
def test_bad_flags_refuse(tlmd_factory, args):
    d = tlmd_factory(start=False, args=args)
    rc, _ = d.start_expect_failure()
    assert rc != 0


def test_bad_storage_refuses(tlmd_factory, tmp_path):
    d = tlmd_factory(start=False, storage="carrier-pigeon:/x")
    rc, _ = d.start_expect_failure()
    assert rc != 0


def test_two_instances_independent(tlmd_factory):
    a = tlmd_factory()
    b = tlmd_factory()
    assert {a.http_port, a.tcp_port}.isdisjoint({b.http_port, b.tcp_port})
    la = a.api("tcp").create(ttl=60000)
    assert b.api("tcp").get(la["id"])["error"] == "not_found"
