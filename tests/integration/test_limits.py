"""What a client may store and read is bounded, and what tlmd writes to disk
is private (issue 9). Each test here failed before the change it pins:
* `description` and `tags` had no limit (100,000 tags were accepted), and
  only `meta` counted against the 64 KiB a lease may carry;
* a `list` page was bounded by count only: 1000 leases of 64 KiB made a
  page of 64 MB, several at once grew the server by hundreds of MB;
* error messages echoed the id a client sent, which may be a token sent by
  mistake;
* the database, its WAL and SHM files and the lock file were created 0644
  and a data folder under umask 000 0777.
"""

import json
import os
import stat
import threading

from tlmd_harness import TcpClient, assert_success, http_request, wait_until

KIB = 1024


def create(api, **fields):
    return api.call({"action": "create", "ttl": 600000, **fields})


# -- client data -------------------------------------------------------------

def test_description_and_tags_are_bounded(api):
    r = api.fail({"action": "create", "description": "d" * 1025}, "invalid_request")
    assert "description" in r["message"]
    r = api.fail({"action": "create", "tags": [f"t{i}" for i in range(65)]},
                 "invalid_request")
    assert "64 tags" in r["message"]
    api.fail({"action": "create", "tags": ["t" * 129]}, "invalid_request")
    api.fail({"action": "create", "tags": [""]}, "invalid_request")
    assert assert_success(api.call({"action": "health"}))["leases"] == 0
    # at the limits each, and within 64 KiB together
    lease = assert_success(create(api, description="d" * 1024,
                                  tags=[f"{i:0128d}" for i in range(64)],
                                  meta={"x": "m" * (50 * KIB)}))["lease"]
    assert len(lease["tags"]) == 64 and len(lease["description"]) == 1024


def test_meta_description_and_tags_count_together(api):
    r = api.fail({"action": "create", "description": "d" * 1024,
                  "tags": [f"{i:0128d}" for i in range(64)],
                  "meta": {"x": "m" * (60 * KIB)}}, "invalid_request")
    assert "together" in r["message"], r
    # an exchange's merge counts the lease's description and tags too
    lease = assert_success(create(api, description="d" * 1024,
                                  tags=[f"{i:0128d}" for i in range(64)]))["lease"]
    r = api.fail({"action": "exchange", "token": lease["value"],
                  "meta": {"x": "m" * (60 * KIB)}}, "invalid_request")
    assert "together" in r["message"], r
    # refused before the swap: the token still works
    assert_success(api.call({"action": "exchange", "token": lease["value"]}))


# -- pages bounded by bytes --------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_list_pages_are_bounded_by_bytes(tlmd):
    n = 600
    meta = {"x": "m" * (60 * KIB)}
    with TcpClient(tlmd.tcp_port) as c:
        for start in range(0, n, 50):
            c.send_many([{"action": "create", "ttl": 600000, "meta": meta}] * 50)
            for r in c.recv_many(50):
                assert_success(r)
    base = rss_kib(tlmd.proc.pid)
    peak = [base]
    pages = []
    errors = []

    def page_through():
        try:
            with TcpClient(tlmd.tcp_port) as c:
                seen, cursor = 0, None
                while True:
                    req = {"action": "list", "limit": 1000}
                    if cursor:
                        req["cursor"] = cursor
                    c.send_raw(json.dumps(req).encode() + b"\n")
                    line = c.recv_line()
                    pages.append(len(line))
                    r = json.loads(line)
                    seen += len(assert_success(r)["leases"])
                    cursor = r["next_cursor"]
                    if cursor is None:
                        break
                assert seen == n, seen
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=page_through) for _ in range(6)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], rss_kib(tlmd.proc.pid))
        for t in threads:
            t.join(0.005)
    assert not errors, errors
    grown_mb = (peak[0] - base) / 1024
    print(f"6 parallel listings of {n} leases of 60 KiB: largest page "
          f"{max(pages) / 2**20:.2f} MiB, {len(pages)} pages, RSS grew "
          f"{grown_mb:.0f} MB (from {base / 1024:.0f} MB)")
    assert max(pages) <= 1.2 * 2**20, "a page is bounded at about 1 MiB"
    assert grown_mb < 100, f"RSS grew {grown_mb:.0f} MB during the listings"


# -- messages never echo ids -------------------------------------------------

def test_messages_name_the_field_not_the_value(api):
    lease = assert_success(create(api))["lease"]
    value = lease["value"]
    for req in ({"action": "get", "token_id": value},
                {"action": "renew", "token_id": value},
                {"action": "revoke", "token_id": value},
                {"action": "job", "job_id": value}):
        r = api.fail(req, "not_found")
        assert value not in r["message"] and lease["id"] not in r["message"], r
        assert ("token_id" if "token_id" in req else "job_id") in r["message"], r
    # nor does a REST route that does not exist
    r = http_request(api.tlmd.http_port, "GET", f"/v1/leases/{value}/colour")
    assert r.status == 404 and value not in r.json["message"], r
    assert "/v1/leases/{id}/colour" in r.json["message"], r


# -- files on disk -----------------------------------------------------------

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_private_whatever_the_umask(tlmd_factory, tmp_path):
    old = os.umask(0)
    try:
        d = tlmd_factory(storage=None)   # the default: sqlite:./data/tlm.db
    finally:
        os.umask(old)
    assert_success(d.action("tcp", {"action": "create", "ttl": 600000}))
    data = tmp_path / "data"
    wait_until(lambda: (data / "tlm.db-wal").exists(), timeout=5,
               what="the WAL file")
    assert mode(data) == 0o700, oct(mode(data))
    for name in ("tlm.db", "tlm.db-wal", "tlm.db-shm", "tlm.db.lock"):
        assert mode(data / name) == 0o600, (name, oct(mode(data / name)))
    # a database in a folder of the operator's keeps the same rule
    own = tmp_path / "own"
    own.mkdir()
    old = os.umask(0)
    try:
        e = tlmd_factory(storage=f"sqlite:{own / 'x.db'}")
    finally:
        os.umask(old)
    assert_success(e.action("tcp", {"action": "create", "ttl": 600000}))
    assert mode(own / "x.db") == 0o600, oct(mode(own / "x.db"))
    assert mode(own / "x.db-wal") == 0o600
