"""Lease fields of issue 15: `scope` (a create may give it), `last_access`
(set by an exchange, null before) and a stable, increasing `row_id` kept in
storage; `get` and `list` show scope and last access for every lease, and
SQLite keeps them across a restart."""

import pytest

from tlmd_harness import assert_failure, parse_ts


def test_scope_and_last_access_show_in_get_and_list(api):
    lease = api.create(ttl=60000, scope="readonly")
    assert lease["scope"] == "readonly" and lease["last_access"] is None
    plain = api.create(ttl=60000)
    assert plain["scope"] == "" and plain["last_access"] is None
    listed = {x["id"]: x for x in api.list_all()}
    assert listed[lease["id"]]["scope"] == "readonly"
    assert listed[plain["id"]]["last_access"] is None
    got = api.ok({"action": "exchange", "token": lease["value"]})["lease"]
    assert got["scope"] == "readonly"
    assert parse_ts(got["last_access"]) >= parse_ts(got["issued"])
    again = api.get(lease["id"])["lease"]
    assert again["last_access"] == got["last_access"]


def test_scope_is_bounded(api):
    r = api.fail({"action": "create", "scope": "s" * 129}, "invalid_request")
    assert "scope" in r["message"]
    assert_failure(api.call({"action": "create", "scope": 5}), "invalid_request")


def test_sqlite_keeps_the_fields_across_a_restart(tlmd_factory, tmp_path):
    d = tlmd_factory(storage=f"sqlite:{tmp_path}/t.db")
    api = d.api("tcp")
    lease = api.create(ttl=600000, scope="readwrite")
    used = api.ok({"action": "exchange", "token": lease["value"]})["lease"]
    api.close()
    d.stop()
    d.start()
    api = d.api("tcp")
    got = api.get(lease["id"])["lease"]
    assert got["scope"] == "readwrite" and got["last_access"] == used["last_access"]
    api.close()
