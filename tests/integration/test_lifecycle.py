"""Priority, cancel, hold/release, retry, children and finalization (SPEC §4)."""

from __future__ import annotations

from datetime import datetime

from cwl_crunch.domain.priority import request_rank
from tests.support.flows import LOG_MANIFEST, OUTPUT_MANIFEST, commit, complete, lock, ok, run


def _rank(request):
    created = datetime.fromisoformat(request["created_at"].replace("Z", "+00:00"))
    return request_rank(request["priority"], created)


def _container(client, uuid):
    return ok(client.get(f"/containers/{uuid}"))


def test_container_priority_follows_the_highest_live_request(service):
    alice, admin = service.client(service.token()), service.admin()
    low = commit(alice, priority=100)
    high = commit(alice, priority=900)
    uuid = low["container_uuid"]
    assert high["container_uuid"] == uuid
    assert _container(admin, uuid)["priority"] == _rank(high)
    ok(alice.put(f"/container_requests/{high['uuid']}", json={"priority": 0}))
    assert _container(admin, uuid)["priority"] == _rank(low)


def test_older_request_wins_within_the_same_priority(service):
    alice = service.client(service.token())
    older = commit(alice, priority=500, command=["a"])
    service.clock.advance(1)
    newer = commit(alice, priority=500, command=["b"])
    assert _container(service.admin(), older["container_uuid"])["priority"] > _container(
        service.admin(), newer["container_uuid"]
    )["priority"]


def test_cancelling_one_of_two_sharing_requests_keeps_the_container(service):
    alice, admin = service.client(service.token()), service.admin()
    first, second = commit(alice), commit(alice)
    uuid = first["container_uuid"]
    cancelled = ok(alice.delete(f"/container_requests/{first['uuid']}"))
    assert cancelled["priority"] == 0
    assert _container(admin, uuid)["state"] == "Queued"
    assert _container(admin, uuid)["priority"] == _rank(second)
    # The last one going cancels the container, and both requests end Final.
    ok(alice.put(f"/container_requests/{second['uuid']}", json={"priority": 0}))
    assert _container(admin, uuid)["state"] == "Cancelled"
    for request in (first, second):
        assert ok(alice.get(f"/container_requests/{request['uuid']}"))["state"] == "Final"


def test_cancelling_a_running_request_leaves_it_to_crunch_run(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    uuid = request["container_uuid"]
    run(admin, uuid)
    ok(alice.delete(f"/container_requests/{request['uuid']}"))
    container = _container(admin, uuid)
    assert (container["state"], container["priority"]) == ("Running", 0)
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "Cancelling"
    ok(admin.put(f"/containers/{uuid}", json={"state": "Cancelled"}))
    final = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (final["state"], final["status"]) == ("Final", "Cancelled")


def test_hold_and_release(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    uuid = request["container_uuid"]
    held = ok(alice.post(f"/container_requests/{request['uuid']}/hold"))
    assert held["on_hold"] is True
    assert _container(admin, uuid)["priority"] == 0
    assert _container(admin, uuid)["state"] == "Queued"  # held, not cancelled
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "On hold"
    status = ok(alice.get(f"/container_requests/{request['uuid']}/container_status"))
    assert status["scheduling_status"] == "On hold."
    assert admin.post(f"/containers/{uuid}/lock").status_code == 422
    ok(alice.post(f"/container_requests/{request['uuid']}/release"))
    assert _container(admin, uuid)["priority"] == _rank(request)
    assert lock(admin, uuid)["state"] == "Locked"


def test_holding_a_locked_container_unlocks_it(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    uuid = request["container_uuid"]
    lock(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "staging inputs"}}))
    ok(alice.post(f"/container_requests/{request['uuid']}/hold"))
    container = _container(admin, uuid)
    assert (container["state"], container["runtime_status"], container["locked_by_uuid"]) == ("Queued", {}, None)


def test_holding_a_running_request_is_refused(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    run(admin, request["container_uuid"])
    response = alice.post(f"/container_requests/{request['uuid']}/hold")
    assert response.status_code == 422
    assert "cancel it instead" in response.json()["errors"][0]


def test_retry_creates_a_linked_request(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    complete(admin, request["container_uuid"], exit_code=2)
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["status"] == "Failed"
    retried = ok(alice.post(f"/container_requests/{request['uuid']}/retry"))
    assert retried["state"] == "Committed"
    assert retried["properties"]["retry_of"] == request["uuid"]
    assert retried["container_uuid"] != request["container_uuid"]  # a failed container is never reused
    old = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert old["properties"]["retried_as"] == retried["uuid"]


def test_retry_of_a_successful_request_is_refused(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    complete(admin, request["container_uuid"])
    assert alice.post(f"/container_requests/{request['uuid']}/retry").status_code == 422


def test_finalization_saves_log_and_output_collections(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice, output_properties={"sample": "S1"}, output_name="my output")
    complete(admin, request["container_uuid"], cost=1.5)
    final = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert final["state"] == "Final" and final["cumulative_cost"] == 1.5
    output = ok(alice.get(f"/collections/{final['output_uuid']}"))
    assert output["manifest"] == OUTPUT_MANIFEST
    assert output["name"] == "my output"
    assert output["properties"] == {"type": "output", "container_request": request["uuid"], "sample": "S1"}
    log = ok(alice.get(f"/collections/{final['log_uuid']}"))
    nested = {f"log for container {request['container_uuid']}/{path}": e for path, e in LOG_MANIFEST.items()}
    assert log["manifest"] == {**LOG_MANIFEST, **nested}


def _child_client(service, admin, parent_uuid):
    """Run the parent container; returns a client holding its container token."""
    token = run(admin, parent_uuid)["auth"]
    return service.client(token)


def test_children_follow_the_parent_and_are_cancelled_when_it_finishes(service):
    alice, admin = service.client(service.token()), service.admin()
    parent = commit(alice, command=["workflow-runner"], runtime_constraints={"API": True})
    runner = _child_client(service, admin, parent["container_uuid"])
    queued_child = commit(runner, command=["step", "1"])
    running_child = commit(runner, command=["step", "2"])
    assert queued_child["requesting_container_uuid"] == parent["container_uuid"]
    parent_priority = _container(admin, parent["container_uuid"])["priority"]
    assert _container(admin, queued_child["container_uuid"])["priority"] == parent_priority
    run(admin, running_child["container_uuid"])

    complete(admin, parent["container_uuid"])
    child = ok(alice.get(f"/container_requests/{queued_child['uuid']}"))
    assert (child["state"], child["priority"]) == ("Final", 0)  # still Queued: Final at once
    assert _container(admin, queued_child["container_uuid"])["state"] == "Cancelled"
    other = ok(alice.get(f"/container_requests/{running_child['uuid']}"))
    assert (other["state"], other["priority"]) == ("Committed", 0)  # crunch-run will stop it
    assert _container(admin, running_child["container_uuid"])["priority"] == 0


def test_child_output_collections_are_intermediate(service):
    alice, admin = service.client(service.token()), service.admin()
    parent = commit(alice, command=["workflow-runner"], runtime_constraints={"API": True})
    runner = _child_client(service, admin, parent["container_uuid"])
    child = commit(runner, command=["step"])
    complete(admin, child["container_uuid"])
    final = ok(runner.get(f"/container_requests/{child['uuid']}"))
    assert ok(alice.get(f"/collections/{final['output_uuid']}"))["properties"]["type"] == "intermediate"


def test_reused_finished_container_costs_nothing(service):
    alice, admin = service.client(service.token()), service.admin()
    first = commit(alice)
    complete(admin, first["container_uuid"], cost=3.0)
    service.clock.advance(1)
    second = commit(alice)
    assert second["state"] == "Final"
    assert second["cumulative_cost"] == 0.0
    assert ok(alice.get(f"/container_requests/{first['uuid']}"))["cumulative_cost"] == 3.0


def test_lists_and_writes_carry_the_derived_status(service):
    alice, admin = service.client(service.token()), service.admin()
    request = commit(alice)
    run(admin, request["container_uuid"])
    ok(admin.put(f"/containers/{request['container_uuid']}", json={"runtime_status": {"error": "doomed"}}))
    listed = ok(alice.get("/container_requests", params={"filters": '[["uuid","=","%s"]]' % request["uuid"]}))
    assert [item["status"] for item in listed["items"]] == ["Failing"]
    renamed = ok(alice.put(f"/container_requests/{request['uuid']}", json={"name": "still doomed"}))
    assert renamed["status"] == "Failing"
