"""Bulk revocation through the real tlmd: ``revoke_prefix`` starts a stored
background job, ``job`` reports its progress, and a job cut off by SIGKILL
finishes after the restart (its leases are found again by its filter).

Whether a credential still exists is asked of the InfluxDB 2.x fake itself.
"""

import signal

from backends_harness import V2Env  # noqa: F401  (the v2 fixture's type)
from test_backends_e2e import FAST_RETRIES, secrets_dir, start_tlmd, v2  # noqa: F401
from tlmd_harness import assert_failure, assert_success, http_request, wait_until


def wait_job_done(api, job_id, timeout=10.0):
    seen = {}

    def done():
        seen["job"] = assert_success(api.call({"action": "job", "job_id": job_id}))["job"]
        return seen["job"]["state"] == "done"

    wait_until(done, timeout=timeout, interval=0.05, what=f"job {job_id} to finish")
    return seen["job"]


def test_revoke_prefix_by_tag_and_backend(tlmd_factory, transport):
    d = tlmd_factory()
    api = d.api(transport)
    blue = [api.create(60000, tags=["blue", f"n{i}"])["id"] for i in range(120)]
    red = [api.create(60000, tags=["red"])["id"] for i in range(30)]
    r = assert_success(api.call({"action": "revoke_prefix", "tag": "blue"}))
    assert r["count"] == 120
    assert r["job"]["job_id"] == r["job_id"]
    assert r["job"]["total"] == 120 and r["job"]["tag"] == "blue"
    job = wait_job_done(api, r["job_id"])
    assert job == {**job, "total": 120, "revoked": 120, "remaining": 0,
                   "irrevocable": 0, "backend": "", "tag": "blue"}
    assert "finished" in job and job["finished"] >= job["created"]
    for lease_id in blue:
        assert_failure(api.get(lease_id), "not_found")
    listed = {x["id"] for x in api.list_all()}
    assert listed == set(red)
    print(f"[{transport}] job {r['job_id']}: 120 of 150 leases revoked, 30 kept")
    # Both filters: backend and tag must match.
    r = assert_success(api.call({"action": "revoke_prefix", "backend": "local",
                                 "tag": "red"}))
    assert r["count"] == 30
    wait_job_done(api, r["job_id"])
    assert api.health()["leases"] == 0
    api.close()


def test_revoke_prefix_bad_input(tlmd):
    api = tlmd.api("tcp")
    api.fail({"action": "revoke_prefix"}, "invalid_request")
    api.fail({"action": "revoke_prefix", "tag": 5}, "invalid_request")
    api.fail({"action": "revoke_prefix", "backend": "nope"}, "unknown_backend")
    api.fail({"action": "job"}, "invalid_request")
    api.fail({"action": "job", "job_id": "no-such-job"}, "not_found")
    r = api.ok({"action": "revoke_prefix", "tag": "nothing-has-it"})
    assert r["count"] == 0 and r["job"]["state"] == "done"
    api.close()


def test_revoke_jobs_over_rest(tlmd):
    api = tlmd.api("tcp")
    for _ in range(10):
        api.create(60000, tags=["rest"])
    r = http_request(tlmd.http_port, "POST", "/v1/jobs", body={"tag": "rest"})
    assert r.status == 201, r
    started = r.json
    assert started["count"] == 10
    wait_until(lambda: http_request(tlmd.http_port, "GET",
                                    f"/v1/jobs/{started['job_id']}").json["job"]["state"]
               == "done", timeout=10.0, what="the REST job to finish")
    assert http_request(tlmd.http_port, "GET", "/v1/jobs/none").status == 404
    assert http_request(tlmd.http_port, "POST", "/v1/jobs", body={}).status == 400
    api.close()


def test_revoke_job_survives_sigkill(v2, tlmd_factory, tmp_path):
    """The backend is down while the job runs; tlmd is killed; the restarted
    tlmd finds the job's leases again and revokes them once the backend is
    back.  A lease tagged alike but created after the job began is spared."""
    d = start_tlmd(tlmd_factory, tmp_path, v2, storage=f"sqlite:{tmp_path / 'leases.db'}",
                   top_level=FAST_RETRIES)
    api = d.api("tcp")
    doomed = [api.create(600000, backend="v2", tags=["doomed"]) for _ in range(20)]
    kept = [api.create(600000, backend="v2", tags=["kept"]) for _ in range(5)]
    v2.set_fault("error503", method="DELETE")
    r = assert_success(api.call({"action": "revoke_prefix", "tag": "doomed"}))
    assert r["count"] == 20
    later = api.create(600000, backend="v2", tags=["doomed"])
    job = assert_success(api.call({"action": "job", "job_id": r["job_id"]}))["job"]
    assert job["state"] == "running" and job["remaining"] == 20
    for lease in doomed:
        assert_failure(api.get(lease["id"]), "not_found")
    api.close()
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    # The credentials outlived the kill: the restart has to finish the job.
    assert all(v2.works(lease) for lease in doomed)
    v2.thaw()
    d.start()
    api = d.api("http")
    job = wait_job_done(api, r["job_id"])
    assert job["total"] == 20 and job["revoked"] == 20 and job["remaining"] == 0
    for lease in doomed:
        assert not v2.works(lease)
        assert not v2.listed(lease)
    for lease in kept + [later]:
        assert v2.works(lease)
        assert_success(api.get(lease["id"]))
    print(f"[v2] job {r['job_id']} finished after SIGKILL and restart: 20 revoked, "
          f"{len(kept) + 1} spared")
    api.close()
