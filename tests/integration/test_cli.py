"""The `tlm` command-line client against the real tlmd: every subcommand,
with tables and --json, its errors and exit codes, --help everywhere, API
keys, where the address and key come from (flags, then TLM_ADDR /
TLM_API_KEY_FILE, then the config file), and `tlm keep` in its three modes
(printing, --output, running a command), including the README's story:
`tlm keep -- my-app` keeps an InfluxDB 1.x credential alive for an app
and revokes it when the app exits (a real influxd). About 20 s.
"""

import json
import os
import select
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from backends_harness import V1Env, split_user_password, write_tlmd_config
from client_harness import (EXIT_CONNECTION, EXIT_LOST, EXIT_NOT_FOUND,
                            EXIT_OK, EXIT_PENDING, EXIT_REFUSED,
                            EXIT_UNAUTHORIZED, EXIT_USAGE, Cli, cli_for,  # noqa: F401
                            free_port, keepers, tlm_binary)  # noqa: F401
from tlmd_harness import wait_until, write_key_file

SUBCOMMANDS = ["create", "get", "renew", "revoke", "list", "exchange",
               "revoke-prefix", "job", "health", "keep"]


@pytest.fixture
def cli(tlmd, cli_for):
    return cli_for(tlmd)


def failed_with(r, code, says):
    assert r.returncode == code, \
        f"exit {r.returncode}, expected {code}: {r.stdout} {r.stderr}"
    assert says in r.stderr, r.stderr
    assert r.stderr.startswith("tlm"), r.stderr


# -- help and usage ------------------------------------------------------------

def test_every_subcommand_has_help_with_the_exit_codes(tlm_binary, tmp_path):
    c = Cli(tlm_binary, tmp_path)
    top = c.ok("--help", addr=False).stdout
    for sub in SUBCOMMANDS:
        assert sub in top
        out = c.ok(sub, "--help", addr=False).stdout
        assert f"tlm {sub}" in out or "Usage:" in out, out
        assert "Exit codes:" in out and "9  keep" in out, out


def test_usage_errors_exit_2(tlm_binary, tmp_path):
    c = Cli(tlm_binary, tmp_path)
    assert c.run(addr=False).returncode == EXIT_USAGE
    assert c.run("frobnicate", addr=False).returncode == EXIT_USAGE
    assert c.run("get", addr=False).returncode == EXIT_USAGE   # lease id missing
    assert c.run("list", "--state", "dead", addr=False).returncode == EXIT_USAGE
    failed_with(c.run("--addr", "ftp://h:1", "health", addr=False), EXIT_USAGE,
                "unknown scheme")


# -- the lease commands ------------------------------------------------------------

@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_create_get_renew_list_revoke(tlmd, cli_for, transport):
    c = cli_for(tlmd, transport)
    lease = c.json("create", "--ttl", "60000", "--renewable", "--tag", "cli",
                   "--meta", '{"app":"x"}')["lease"]
    assert lease["renewable"] and lease["tags"] == ["cli"]
    assert lease["meta"] == {"app": "x"}
    table = c.ok("get", lease["id"]).stdout
    assert lease["id"] in table and lease["value"] in table and "renewable" in table
    assert c.ok("get", lease["id"], "--value-only").stdout == lease["value"] + "\n"
    renewed = c.json("renew", lease["id"], "--ttl", "120000")["lease"]
    assert renewed["ttl"] == 120000 and renewed["expires"] > lease["expires"]
    listed = c.json("list", "--tag", "cli")["leases"]
    assert [x["id"] for x in listed] == [lease["id"]]
    assert "value" not in listed[0]
    rows = c.ok("list").stdout.splitlines()
    assert rows[0].split()[:3] == ["ID", "BACKEND", "STATE"]
    assert any(r.startswith(lease["id"]) for r in rows[1:])
    assert lease["value"] not in c.ok("list").stdout
    assert c.ok("revoke", lease["id"]).stdout == f"revoked {lease['id']}\n"
    failed_with(c.run("get", lease["id"]), EXIT_NOT_FOUND, "not_found")
    failed_with(c.run("renew", lease["id"]), EXIT_NOT_FOUND, "not_found")
    failed_with(c.run("revoke", lease["id"]), EXIT_NOT_FOUND, "not_found")


def test_list_pages_through_everything(cli):
    made = {cli.json("create", "--ttl", "60000", "--tag", "many")["lease"]["id"]
            for _ in range(12)}
    listed = cli.json("list", "--tag", "many", "--page-size", "5")["leases"]
    assert {x["id"] for x in listed} == made and len(listed) == 12


def test_exchange_reads_the_token_from_a_file_or_stdin(cli, tmp_path):
    first = cli.ok("create", "--ttl", "60000", "--value-only").stdout.strip()
    token = tmp_path / "token"
    token.write_text(first + "\n")
    second = cli.ok("exchange", "--token-file", token, "--value-only").stdout.strip()
    assert second != first and second.split(".")[0] == first.split(".")[0]
    failed_with(cli.run("exchange", "--token-file", token), EXIT_NOT_FOUND,
                "invalid_token")
    third = cli.json("exchange", "--token-file", "-", "--meta", '{"n":3}',
                     stdin=second)["lease"]
    assert third["meta"] == {"n": 3} and third["value"] != second
    failed_with(cli.run("exchange", "--token-file", tmp_path / "none"),
                EXIT_USAGE, "cannot read the token file")
    # The token was never on the command line, and never echoed.
    assert first not in cli.run("exchange", "--token-file", token).stderr


def test_revoke_prefix_and_job(cli):
    for _ in range(3):
        cli.ok("create", "--ttl", "60000", "--tag", "batch")
    job = cli.json("revoke-prefix", "--tag", "batch")["job"]
    assert job["total"] == 3
    done = wait_until(lambda: cli.json("job", job["job_id"])["job"]["state"] == "done",
                      10, what="the job to finish")
    assert done
    shown = cli.ok("job", job["job_id"]).stdout
    assert "done" in shown and "revoked" in shown
    assert cli.json("list", "--tag", "batch")["leases"] == []
    failed_with(cli.run("job", "nosuchjob"), EXIT_NOT_FOUND, "not_found")
    failed_with(cli.run("revoke-prefix"), EXIT_REFUSED, "needs --backend or --tag")


def test_ids_never_look_like_flags(cli):
    # Ids are base64url; tlmd draws them so none begins with '-', which
    # would make `tlm get <id>` read the id as flags. 200 leases would
    # show such an id with near certainty (1 in 32 per draw otherwise).
    ids = [cli.json("create", "--ttl", "60000", "--tag", "ids")["lease"]["id"]
           for _ in range(200)]
    assert not [i for i in ids if i[0] in "-_"]
    job = cli.json("revoke-prefix", "--tag", "ids")["job"]
    assert job["job_id"][0] not in "-_"
    # An id from elsewhere that does begin with '-' goes after `--`.
    failed_with(cli.run("get", "--", "-" + ids[0][1:]), EXIT_NOT_FOUND, "not_found")


def test_health(cli):
    assert cli.json("health")["status"] == "ok"
    out = cli.ok("health").stdout
    assert out.startswith("status      ok") and "BACKEND" in out and "local" in out


def test_failures_have_their_exit_codes(cli, tlm_binary, tmp_path):
    failed_with(cli.run("create", "--ttl", "5"), EXIT_REFUSED, "invalid_request")
    failed_with(cli.run("create", "--backend", "nope"), EXIT_REFUSED,
                "unknown_backend")
    fixed = cli.json("create", "--ttl", "60000")["lease"]
    failed_with(cli.run("renew", fixed["id"]), EXIT_REFUSED, "not_renewable")
    failed_with(cli.run("create", "--meta", "[1]"), EXIT_REFUSED,
                "--meta must be a JSON object")
    failed_with(cli.run("create", "--option", "=x"), EXIT_REFUSED, "KEY=VALUE")
    down = Cli(tlm_binary, tmp_path, f"tcp://127.0.0.1:{free_port()}")
    failed_with(down.run("health"), EXIT_CONNECTION, "connection_failed")
    tls = Cli(tlm_binary, tmp_path, "https://127.0.0.1:1")
    failed_with(tls.run("health"), EXIT_CONNECTION, "issue 13")


# -- API keys and where settings come from ---------------------------------------

def test_api_keys_from_flag_env_and_config(tlmd_factory, cli_for, tmp_path):
    key_file = write_key_file(tmp_path / "keys", ["k-right"])
    wrong = write_key_file(tmp_path / "wrong", ["k-wrong"])
    daemon = tlmd_factory(api_key_file=key_file)
    for transport in ("tcp", "http"):
        c = cli_for(daemon, transport)
        failed_with(c.run("health"), EXIT_UNAUTHORIZED, "unauthorized")
        failed_with(c.run("--api-key-file", wrong, "health"), EXIT_UNAUTHORIZED,
                    "unauthorized")
        assert c.json("--api-key-file", key_file, "health")["status"] == "ok"
        assert c.json("health", env={"TLM_API_KEY_FILE": key_file})["status"] == "ok"
        r = c.run("--api-key-file", wrong, "health")
        assert "k-wrong" not in r.stderr + r.stdout
    failed_with(c.run("--api-key-file", tmp_path / "missing", "health"), EXIT_USAGE,
                "cannot read the API key file")


def test_flags_beat_environment_beat_config_file(tlmd, tlm_binary, tmp_path):
    right = f"tcp://127.0.0.1:{tlmd.tcp_port}"
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    c = Cli(tlm_binary, tmp_path)   # no --addr of its own
    config = tmp_path / ".config" / "tlm" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"addr": right}))
    assert c.json("health", addr=False)["status"] == "ok"        # config file
    failed_with(c.run("health", addr=False, env={"TLM_ADDR": nowhere}),
                EXIT_CONNECTION, "cannot connect")               # env beats it
    config.write_text(json.dumps({"addr": nowhere}))
    assert c.json("health", addr=False, env={"TLM_ADDR": right})["status"] == "ok"
    assert c.json("--addr", right, "health", addr=False,
                  env={"TLM_ADDR": nowhere})["status"] == "ok"   # flag beats env
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"addr": right}))
    assert c.json("health", addr=False, env={"TLM_CONFIG": other})["status"] == "ok"
    other.write_text(json.dumps({"adress": right}))
    failed_with(c.run("--config", other, "health", addr=False), EXIT_USAGE,
                "'adress' is not a setting")


# -- keep --------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_keep_prints_values_and_revokes_on_sigterm(tlmd, cli_for, keepers, tmp_path,
                                                   transport):
    cli = cli_for(tlmd, transport)
    k = keepers(cli, tmp_path, "--ttl", "60000", "--tag", "printed")
    first = k.wait_event(lambda e: e["event"] == "obtained")
    ready, _, _ = select.select([k.proc.stdout], [], [], 10)
    assert ready, "tlm keep printed no value"
    assert k.proc.stdout.readline().decode().strip() == first["value"]
    assert cli.json("get", first["lease_id"])["lease"]["value"] == first["value"]
    assert k.stop() == EXIT_OK
    k.wait_event(lambda e: e["event"] == "revoked")
    failed_with(cli.run("get", first["lease_id"]), EXIT_NOT_FOUND, "not_found")
    assert first["value"] not in k.stderr()


def test_keep_writes_the_value_to_a_file_0600(cli, keepers, tmp_path):
    out = tmp_path / "cred"
    k = keepers(cli, tmp_path, "--ttl", "2000", "--stale", "0.5", "--output", out)
    k.wait_count("exchanged", 1)
    wait_until(lambda: out.exists(), 10, what="the output file")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    latest = lambda: [e for e in k.events() if "value" in e][-1]["value"]
    wait_until(lambda: out.read_text().strip() == latest(), 10,
               what="the file to hold the latest value")
    assert k.stop() == EXIT_OK
    assert not out.exists(), "the revoked value's file was left behind"


def test_keep_an_existing_lease_and_leave_it_alive(cli, keepers, tmp_path):
    lease = cli.json("create", "--ttl", "2000", "--renewable", "--backend", "local")
    lease = lease["lease"]
    k = keepers(cli, tmp_path, "--lease-id", lease["id"], "--no-revoke",
                "--stale", "0.5")
    k.wait_count("exchanged", 1)
    kinds = [e["event"] for e in k.events()]
    assert "obtained" not in kinds and "replaced" not in kinds, kinds
    assert {e["lease_id"] for e in k.events()} == {lease["id"]}
    assert k.stop() == EXIT_OK
    assert cli.run("get", lease["id"]).returncode == EXIT_OK   # --no-revoke
    failed_with(cli.run("keep", "--lease-id", "nosuchlease"), EXIT_NOT_FOUND,
                "cannot keep lease nosuchlease")


def test_keep_passes_signals_to_the_command_and_exits_with_its_status(
        cli, keepers, tmp_path):
    app = ("import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
           "print('up', flush=True)\n"
           "time.sleep(60)\n")
    k = keepers(cli, tmp_path, "--ttl", "60000",
                command=[sys.executable, "-u", "-c", app])
    lease = k.wait_event(lambda e: e["event"] == "obtained")
    ready, _, _ = select.select([k.proc.stdout], [], [], 10)
    assert ready and k.proc.stdout.readline() == b"up\n"
    assert k.stop(signal.SIGTERM) == 42
    failed_with(cli.run("get", lease["lease_id"]), EXIT_NOT_FOUND, "not_found")


def test_keep_without_recreate_exits_9_when_the_lease_is_gone(cli, keepers, tmp_path):
    k = keepers(cli, tmp_path, "--ttl", "1500", "--stale", "0.5", "--no-recreate",
                command=[sys.executable, "-c", "import time; time.sleep(60)"])
    lease = k.wait_event(lambda e: e["event"] == "obtained")
    cli.ok("revoke", lease["lease_id"])
    assert k.proc.wait(20) == EXIT_LOST
    lost = k.wait_event(lambda e: e["event"] == "lost")
    assert "recreating is off" in lost["message"]


def test_keep_reports_a_command_that_cannot_run(cli, keepers, tmp_path):
    k = keepers(cli, tmp_path, "--ttl", "60000",
                command=[str(tmp_path / "no-such-app")])
    assert k.proc.wait(20) == 127
    assert "cannot run" in k.stderr()
    k.wait_event(lambda e: e["event"] == "revoked")


def test_keep_refuses_to_start_without_a_lease(cli, keepers, tmp_path):
    k = keepers(cli, tmp_path, "--ttl", "5", command=["true"])
    assert k.proc.wait(20) == EXIT_REFUSED
    assert "ttl" in k.stderr()


# -- the README's story: an InfluxDB 1.x credential kept for an app ----------------

APP = textwrap.dedent("""
    # A stand-in for my-app: it uses the credential from INFLUX_CRED,
    # outlives the lease's first term, uses it again, and exits 7.
    import base64, os, sys, time, urllib.request, urllib.error
    url, db, out = sys.argv[1], sys.argv[2], sys.argv[3]
    cred = os.environ["INFLUX_CRED"]
    def write():
        req = urllib.request.Request(url + "/write?db=" + db, data=b"app v=1",
                                     method="POST")
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(cred.encode()).decode())
        try:
            return urllib.request.urlopen(req, timeout=5).status
        except urllib.error.HTTPError as e:
            return e.code
    first = write()
    time.sleep(float(sys.argv[4]))
    second = write()
    open(out, "w").write(f"{cred.split(':')[0]} {first} {second}")
    sys.exit(7)
""")


@pytest.fixture
def v1(influxd1_module, tmp_path):
    return V1Env(influxd1_module, tmp_path)


def test_keep_runs_an_app_with_an_influxdb1_credential_and_revokes_it(
        v1, tlmd_factory, cli_for, keepers, tmp_path):
    daemon = tlmd_factory(config=write_tlmd_config(tmp_path, v1.config()))
    c = cli_for(daemon)
    app = tmp_path / "my_app.py"
    app.write_text(APP)
    report = tmp_path / "report"
    # ttl 2 s renewed at half-time; the app sleeps 3 s between its writes.
    k = keepers(c, tmp_path, "--backend", "v1", "--ttl", "2000", "--stale", "0.5",
                "--jitter", "0.1", "--env", "INFLUX_CRED",
                command=[sys.executable, app, v1.srv.url, v1.srv.database,
                         report, "3"])
    assert k.proc.wait(30) == 7, k.stderr()             # the app's own status
    user, first, second = report.read_text().split()
    assert (first, second) == ("204", "204"), "the credential stopped working"
    kinds = [e["event"] for e in k.events()]
    assert kinds[0] == "obtained" and "renewed" in kinds and kinds[-1] == "revoked"
    assert "replaced" not in kinds                      # one lease all along
    assert user not in v1.server_credentials(), "the user is still at influxd"
    failed_with(c.run("get", k.events()[0]["lease_id"]), EXIT_NOT_FOUND, "not_found")
    assert split_user_password(k.events()[0]["value"])[1] not in k.stderr()


def test_revoke_pending_and_degraded_health_exit_8(v1, tlmd_factory, cli_for, tmp_path):
    daemon = tlmd_factory(config=write_tlmd_config(tmp_path, v1.config()))
    c = cli_for(daemon)
    lease = c.json("create", "--backend", "v1", "--ttl", "60000")["lease"]
    v1.stop_server()
    try:
        r = c.run("revoke", lease["id"])
        assert r.returncode == EXIT_PENDING, r.stderr
        assert r.stdout.startswith("revocation pending:")
        assert c.run("health").returncode == EXIT_PENDING
        assert c.run("--json", "health").returncode == EXIT_PENDING
    finally:
        v1.start_server()
    wait_until(lambda: c.run("health").returncode == EXIT_OK, 30,
               what="the revocation to go through once influxd is back")
    assert lease["backend_id"] not in v1.server_credentials()


# -- bash completion ------------------------------------------------------------------

COMPLETION = os.path.join(os.path.dirname(__file__), "..", "..", "client",
                          "completion", "tlm.bash")


def complete(*words):
    script = (f"source {COMPLETION}; COMP_WORDS=({' '.join(words)} ''); "
              f"COMP_CWORD={len(words)}; _tlm; echo \"${{COMPREPLY[@]}}\"")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          check=True).stdout.split()


def test_bash_completion_offers_what_each_subcommand_takes(tlm_binary, tmp_path):
    assert set(complete("tlm")) >= set(SUBCOMMANDS)
    c = Cli(tlm_binary, tmp_path)
    for sub in SUBCOMMANDS:
        offered = [f for f in complete("tlm", sub) if f != "--help"]
        documented = c.ok(sub, "--help", addr=False).stdout
        for flag in offered:
            assert flag in documented, f"completion offers {flag} for {sub}"
