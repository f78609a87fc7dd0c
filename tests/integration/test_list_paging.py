"""list: paging returns every matching lease exactly once; limits."""

from collections import Counter

import pytest

from tlmd_harness import assert_success, check_lease, without_value


def _bulk_create(tlmd, reqs):
    """Create many leases quickly over one pipelined TCP connection."""
    with tlmd.tcp() as c:
        c.send_many(reqs)
        return [check_lease(assert_success(r)["lease"])
                for r in c.recv_many(len(reqs), timeout=60)]


@pytest.mark.parametrize("page", [1, 7, 50])
def test_paging_exactly_once_with_filters(tlmd, transport, page):
    reqs = []
    for i in range(60):
        tags = []
        if i % 2 == 0:
            tags.append("even")
        if i % 3 == 0:
            tags.append("three")
        reqs.append({"action": "create", "options": {"ttl": 60000}, "tags": tags,
                     "meta": {"i": i}})
    leases = _bulk_create(tlmd, reqs)
    by_id = {l["id"]: l for l in leases}
    api = tlmd.api(transport)

    def check(filters, expected_ids):
        got = api.list_all(page_limit=page, **filters)
        ids = [l["id"] for l in got]
        dups = [k for k, v in Counter(ids).items() if v > 1]
        assert not dups, f"leases listed more than once: {dups}"
        assert set(ids) == set(expected_ids), \
            f"missing {set(expected_ids) - set(ids)}, extra {set(ids) - set(expected_ids)}"
        for l in got:
            check_lease(l, with_value=False)
            assert l == without_value(by_id[l["id"]])

    check({}, by_id)
    check({"backend": "local"}, by_id)
    check({"tag": "even"}, [l["id"] for l in leases if "even" in l["tags"]])
    check({"tag": "three", "backend": "local"},
          [l["id"] for l in leases if "three" in l["tags"]])
    check({"tag": "none-such"}, [])


def test_paging_pages_are_full_until_last(api):
    for i in range(23):
        api.create(ttl=60000, tags=["pg"])
    sizes, cursor = [], None
    while True:
        req = {"action": "list", "tag": "pg", "limit": 5}
        if cursor:
            req["cursor"] = cursor
        r = api.ok(req)
        sizes.append(len(r["leases"]))
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert sum(sizes) == 23
    assert all(s == 5 for s in sizes[:-1]), sizes
    assert 1 <= sizes[-1] <= 5 or sizes[-1] == 0


def test_paging_survives_revocation_between_pages(api):
    leases = [api.create(ttl=60000, tags=["rv"]) for _ in range(12)]
    r = api.ok({"action": "list", "tag": "rv", "limit": 4})
    seen = [l["id"] for l in r["leases"]]
    # revoke one lease that was already returned and one that was not
    unseen = [l["id"] for l in leases if l["id"] not in seen]
    api.ok({"action": "revoke", "token_id": seen[0]})
    api.ok({"action": "revoke", "token_id": unseen[0]})
    cursor = r["next_cursor"]
    while cursor is not None:
        r = api.ok({"action": "list", "tag": "rv", "limit": 4, "cursor": cursor})
        seen += [l["id"] for l in r["leases"]]
        cursor = r["next_cursor"]
    assert len(seen) == len(set(seen)), "duplicates across pages"
    expected = {l["id"] for l in leases} - {unseen[0]}
    assert set(seen) == expected


def test_list_default_limit_and_cap(tlmd, transport):
    n = 1010
    _bulk_create(tlmd, [{"action": "create", "options": {"ttl": 60000}} for _ in range(n)])
    api = tlmd.api(transport)
    r = api.ok({"action": "list"})
    assert len(r["leases"]) == 100, "default limit is 100"
    assert isinstance(r["next_cursor"], str)
    r = api.ok({"action": "list", "limit": 5000})
    assert len(r["leases"]) == 1000, "limit > 1000 is capped at 1000"
    assert isinstance(r["next_cursor"], str)
    r2 = api.ok({"action": "list", "limit": 5000, "cursor": r["next_cursor"]})
    assert len(r2["leases"]) == 10
    assert r2["next_cursor"] is None
    ids = [l["id"] for l in r["leases"] + r2["leases"]]
    assert len(set(ids)) == n
    assert api.health()["leases"] == n
