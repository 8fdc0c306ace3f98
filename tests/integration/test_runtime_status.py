"""runtime_status rules (SPEC §3.4)."""

from __future__ import annotations

from tests.support.flows import commit, lock, ok, run


def _running(service):
    alice, admin = service.client(service.token()), service.admin()
    uuid = commit(alice)["container_uuid"]
    run(admin, uuid)
    return admin, uuid


def test_updates_merge_at_the_top_level_and_null_deletes(service):
    admin, uuid = _running(service)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "running", "jobsRunning": 3}}))
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"warning": "slow disk"}}))
    merged = ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"jobsRunning": None, "error": "boom"}}))
    assert merged["runtime_status"] == {"activity": "running", "warning": "slow disk", "error": "boom"}


def test_concurrent_writers_do_not_erase_each_other(service):
    admin, uuid = _running(service)
    runner = service.client(ok(admin.get(f"/containers/{uuid}"))["auth"])
    ok(runner.put(f"/containers/{uuid}", json={"runtime_status": {"error": "step a failed"}}))
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"warning": "over 90% memory"}}))
    assert ok(admin.get(f"/containers/{uuid}"))["runtime_status"] == {
        "error": "step a failed",
        "warning": "over 90% memory",
    }


def test_well_known_keys_must_be_strings_and_counters_integers(service):
    admin, uuid = _running(service)
    for bad in ({"error": 1}, {"activity": ["x"]}, {"cause": "gremlins"}, {"jobsFailed": -1}, {"jobsFailed": "2"}):
        response = admin.put(f"/containers/{uuid}", json={"runtime_status": bad})
        assert response.status_code == 422, bad
        assert response.json()["errors"][0].startswith("runtime_status.")
    assert ok(admin.get(f"/containers/{uuid}"))["runtime_status"] == {}


def test_writable_only_while_locked_or_running_or_on_cancel(service):
    alice, admin = service.client(service.token()), service.admin()
    uuid = commit(alice)["container_uuid"]
    assert admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "x"}}).status_code == 422
    lock(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "preparing"}}))
    cancelled = ok(admin.put(f"/containers/{uuid}", json={
        "state": "Cancelled", "runtime_status": {"error": "no node fits", "cause": "unsatisfiable"}}))
    assert cancelled["runtime_status"] == {"activity": "preparing", "error": "no node fits", "cause": "unsatisfiable"}
    assert admin.put(f"/containers/{uuid}", json={"runtime_status": {"error": "late"}}).status_code == 422


def test_cleared_when_a_container_is_unlocked(service):
    alice, admin = service.client(service.token()), service.admin()
    uuid = commit(alice)["container_uuid"]
    lock(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"warning": "from attempt 1"}}))
    unlocked = ok(admin.post(f"/containers/{uuid}/unlock"))
    assert (unlocked["state"], unlocked["runtime_status"]) == ("Queued", {})


def test_error_makes_the_request_status_failing(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    run(admin, request["container_uuid"])
    ok(admin.put(f"/containers/{request['container_uuid']}", json={"runtime_status": {"warning": "hmm"}}))
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "Warning"
    ok(admin.put(f"/containers/{request['container_uuid']}", json={"runtime_status": {"error": "doomed"}}))
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "Failing"
