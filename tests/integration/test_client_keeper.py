"""The lease keeper (client/include/tlm/lease_keeper.hpp) against the real
tlmd, through `tlm keep`, whose events (JSON lines with the keeper's own
timestamps) the tests read: renewals spread out by jitter over many
keepers, backoff while tlmd is stopped and recovery when it is back, the
grace period, the file cache shared by two processes, a new lease after
the total-life cap (local and a real influxd 1.x), and local tokens
exchanged instead of renewed. Nothing asserts an absolute timing: only
orders, and bounds the keeper computes itself. About 30 s.
"""

import stat
import subprocess

import pytest

from backends_harness import V1Env, write_tlmd_config
from client_harness import (EXIT_NOT_FOUND, EXIT_OK, cli_for,  # noqa: F401
                            fixed_port_tlmd, keepers, tlm_binary)  # noqa: F401
from tlmd_harness import wait_until


def of_kind(events, *kinds):
    return [e for e in events if e["event"] in kinds]


@pytest.fixture
def spread_backend(request, tmp_path):
    """(backend, tlmd config or None, the refresh event) for the spread test."""
    if request.param == "local":
        return "local", None, "exchanged"
    v1 = V1Env(request.getfixturevalue("influxd1_module"), tmp_path)
    return v1.name, write_tlmd_config(tmp_path, v1.config()), "renewed"


@pytest.mark.parametrize("spread_backend", ["local", "v1"], indirect=True)
def test_many_keepers_refresh_at_spread_out_moments(spread_backend, tlmd_factory,
                                                    cli_for, keepers, tmp_path):
    # ttl 3 s, stale at 0.6, jitter 0.5: each first refresh falls at a
    # random point 0.3 s to 1.8 s after its lease was obtained.
    backend, config, refresh = spread_backend
    c = cli_for(tlmd_factory(config=config))
    ks = [keepers(c, tmp_path, "--backend", backend, "--ttl", "3000",
                  "--stale", "0.6", "--jitter", "0.5", name=f"k{i}")
          for i in range(8)]
    offsets = []
    for k in ks:
        k.wait_count(refresh, 1)
        events = k.events()
        obtained = of_kind(events, "obtained")[0]
        refreshed = of_kind(events, refresh)[0]
        offsets.append(refreshed["at"] - obtained["at"])
    # Never before the jitter window opens (0.1 of the term, minus the
    # few ms between reply and event)...
    assert min(offsets) >= 300 - 50, offsets
    # ...and spread over it: a range under 20% of the 1.5 s window has a
    # chance of about 1e-4 with 8 uniform draws, and load only adds noise.
    assert max(offsets) - min(offsets) >= 300, offsets
    assert len(set(offsets)) > 1
    assert all(k.stop() == EXIT_OK for k in ks)     # each revokes its own


@pytest.mark.parametrize("transport", ["tcp", "http"])
def test_backoff_while_tlmd_is_stopped_and_recovery(tlmd_factory, cli_for, keepers,
                                                    tmp_path, transport):
    daemon = fixed_port_tlmd(tlmd_factory, tmp_path)
    c = cli_for(daemon, transport)
    k = keepers(c, tmp_path, "--ttl", "30000", "--stale", "0.05", "--jitter", "0",
                "--backoff-max-ms", "1000")
    obtained = k.wait_event(lambda e: e["event"] == "obtained")
    daemon.stop()
    k.wait_count("failed", 4)
    failed = of_kind(k.events(), "failed")[:4]
    assert [e["attempt"] for e in failed] == [1, 2, 3, 4]
    for e in failed:
        assert e["error"] in ("connection_failed", "timeout"), e
        # the grace period: the lease is still served while it is valid
        assert e["lease_id"] == obtained["lease_id"] and e["at"] < e["expires"]
        assert e["retry_at"] - e["at"] <= 1000, e         # bounded backoff
    daemon.start()
    back = k.wait_event(lambda e: e["event"] == "exchanged"
                        and e["at"] > failed[-1]["at"], timeout=20)
    assert back["lease_id"] == obtained["lease_id"]      # the same lease, kept
    shown = c.json("get", obtained["lease_id"])["lease"]["value"]
    # (it may have been exchanged again since)
    assert shown in [e["value"] for e in of_kind(k.events(), "exchanged")]
    assert k.stop() == EXIT_OK


def test_grace_period_then_a_new_lease_after_the_outage(tlmd_factory, cli_for,
                                                        keepers, tmp_path):
    daemon = fixed_port_tlmd(tlmd_factory, tmp_path)
    c = cli_for(daemon)
    out = tmp_path / "cred"
    k = keepers(c, tmp_path, "--ttl", "4000", "--stale", "0.5", "--jitter", "0",
                "--backoff-max-ms", "400", "--output", out)
    k.wait_event(lambda e: e["event"] == "obtained")
    wait_until(lambda: out.exists(), 10, what="the output file")
    daemon.stop()
    first_failure = k.wait_event(lambda e: e["event"] == "failed")
    # The lease the keeper held when tlmd went away.
    held = [e for e in k.events()[:k.events().index(first_failure)] if "value" in e][-1]
    # Failures while it is valid still serve it; after its expiry the
    # keeper says it has none.
    after = k.wait_event(lambda e: e["event"] == "failed"
                         and e["at"] > held["expires"], timeout=20)
    assert "lease_id" not in after
    during = [e for e in of_kind(k.events(), "failed") if e["at"] < held["expires"]]
    assert during and all(e["lease_id"] == held["lease_id"] for e in during)
    assert out.read_text().strip() == held["value"]       # kept through the outage
    daemon.start()
    replaced = k.wait_event(lambda e: e["event"] == "replaced", timeout=20)
    assert replaced["lease_id"] != held["lease_id"]
    wait_until(lambda: out.read_text().strip()
               == [e for e in k.events() if "value" in e][-1]["value"], 10,
               what="the newest value in the output file")
    assert k.stop() == EXIT_OK


def test_file_cache_is_shared_by_processes_and_restarts(tlmd, cli_for, keepers,
                                                        tmp_path):
    c = cli_for(tlmd)
    cache = tmp_path / "lease.json"
    args = ["--ttl", "60000", "--cache", cache, "--tag", "cached"]
    # Two processes at once on an empty cache: the lock lets one create,
    # the other takes its lease.
    a = keepers(c, tmp_path, *args, "--no-revoke", name="a")
    b = keepers(c, tmp_path, *args, "--no-revoke", name="b")
    first = [k.wait_event(lambda e: e["event"] in ("obtained", "adopted"))
             for k in (a, b)]
    assert sorted(e["event"] for e in first) == ["adopted", "obtained"]
    assert first[0]["lease_id"] == first[1]["lease_id"]
    assert first[0]["value"] == first[1]["value"]
    assert len(c.json("list", "--tag", "cached")["leases"]) == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # A restarted process uses the same lease too.
    assert a.stop() == EXIT_OK and b.stop() == EXIT_OK
    again = keepers(c, tmp_path, *args, name="again")
    adopted = again.wait_event(lambda e: e["event"] in ("obtained", "adopted"))
    assert adopted["event"] == "adopted"
    assert adopted["lease_id"] == first[0]["lease_id"]
    # Its stop revokes the lease and forgets the cache file.
    assert again.stop() == EXIT_OK
    assert c.run("get", adopted["lease_id"]).returncode == EXIT_NOT_FOUND
    assert not cache.exists()


@pytest.fixture
def cap_backend(request, tmp_path):
    """(backend name, tlmd config or None) for the cap test."""
    if request.param == "local":
        return "local", None
    v1 = V1Env(request.getfixturevalue("influxd1_module"), tmp_path)
    return v1.name, write_tlmd_config(tmp_path, v1.config())


@pytest.mark.parametrize("cap_backend", ["local", "v1"], indirect=True)
def test_a_new_lease_after_the_total_life_cap(cap_backend, tlmd_factory, cli_for,
                                              keepers, tmp_path):
    backend, config = cap_backend
    daemon = tlmd_factory(config=config,
                          args=["--max-ttl", "2500", "--default-ttl", "2000"])
    c = cli_for(daemon)
    k = keepers(c, tmp_path, "--backend", backend, "--ttl", "2000", "--stale", "0.5",
                "--jitter", "0")
    replaced = k.wait_event(lambda e: e["event"] == "replaced", timeout=20)
    events = k.events()
    first = of_kind(events, "obtained")[0]
    assert replaced["lease_id"] != first["lease_id"]
    if backend != "local":    # a renew's reply says the cap cut its term
        renewed = of_kind(events, "renewed")
        assert renewed and "capped" in renewed[-1].get("message", ""), events
    assert not of_kind(events, "lost"), events
    assert k.stop() == EXIT_OK


def test_local_tokens_are_exchanged_not_renewed(tlmd, cli_for, keepers, tmp_path):
    c = cli_for(tlmd)
    k = keepers(c, tmp_path, "--ttl", "2000", "--stale", "0.4", "--jitter", "0.1")
    k.wait_count("exchanged", 3)
    events = of_kind(k.events(), "obtained", "exchanged")
    assert not of_kind(k.events(), "renewed")
    assert len({e["lease_id"] for e in events}) == 1
    values = [e["value"] for e in events]
    assert len(set(values)) == len(values), "an exchange kept the old value"
    old = tmp_path / "old"
    old.write_text(values[0])
    r = c.run("exchange", "--token-file", old)
    assert r.returncode == EXIT_NOT_FOUND, "a used one-time token still works"
    latest = of_kind(k.events(), "obtained", "exchanged")[-1]
    shown = c.json("get", latest["lease_id"])["lease"]["value"]
    # The keeper may have exchanged again meanwhile: then it is newer still.
    assert shown == latest["value"] or shown in \
        [e["value"] for e in of_kind(k.events(), "exchanged")]
    assert k.stop() == EXIT_OK
