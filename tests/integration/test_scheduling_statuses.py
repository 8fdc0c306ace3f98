"""Many containers' scheduling status in one call (`PUT containers/scheduling_status`, SPEC §6):
what a dispatcher's round found out about its queue, checked per container like single updates."""

from __future__ import annotations

from tests.support.flows import commit, lock, ok, refused, run

UNKNOWN = "zzzzz-dz642-000000000000000"


def _status(admin, uuid: str) -> str:  # type: ignore[no-untyped-def]
    return ok(admin.get(f"/containers/{uuid}"))["scheduling_status"]


def test_statuses_are_set_together_and_a_container_that_cannot_take_one_is_skipped_with_the_reason(service):
    admin, alice = service.admin(), service.client(service.token("alice"))
    other = service.client(service.token("dispatcher-2", admin=True))
    requests = [commit(alice, command=["echo", str(i)]) for i in range(5)]
    queued, mine, theirs, running = ([r["container_uuid"] for r in requests[:2]],
                                     requests[2]["container_uuid"], requests[3]["container_uuid"],
                                     requests[4]["container_uuid"])
    lock(admin, mine)
    lock(other, theirs)
    run(admin, running)
    statuses = {queued[0]: "Waiting in queue at position 1. All 2 vCPUs are in use.",
                queued[1]: "Waiting in queue at position 2. All 2 vCPUs are in use.",
                mine: "Preparing runtime environment, slowly.", theirs: "mine now", running: "too late",
                UNKNOWN: "nobody"}

    answer = ok(admin.put("/containers/scheduling_status", json={"statuses": statuses}))

    assert answer["updated"] == [*queued, mine]
    assert set(answer["skipped"]) == {theirs, running, UNKNOWN}
    assert "locked by another token" in answer["skipped"][theirs]
    assert "not found" in answer["skipped"][UNKNOWN]
    assert "scheduling_status" in answer["skipped"][running]
    for uuid in (*queued, mine):
        assert _status(admin, uuid) == statuses[uuid]
    assert _status(admin, theirs) == "Preparing runtime environment."  # what its lock said, unchanged
    assert _status(admin, running) == ""
    waiting = ok(alice.get(f"/container_requests/{requests[1]['uuid']}/container_status"))
    assert waiting == {"uuid": queued[1], "state": "Queued", "scheduling_status": statuses[queued[1]]}


def test_each_status_written_is_an_update_event_like_a_single_one(service):
    admin, alice = service.admin(), service.client(service.token("alice"))
    uuids = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(2)]
    mark = ok(admin.get("/events/batch"))["last_id"]
    ok(admin.put("/containers/scheduling_status", json={"statuses": {u: "Waiting." for u in uuids}}))
    events = ok(admin.get("/events/batch", params={"since": mark}))["items"]
    changed = {e["object_uuid"]: e["properties"]["changed"] for e in events if e["event_type"] == "update"}
    assert changed == {u: ["scheduling_status"] for u in uuids}


def test_bad_batches_are_refused_whole_and_change_nothing(service):
    admin, alice = service.admin(), service.client(service.token("alice"))
    uuid = commit(alice)["container_uuid"]
    bad = {
        "no statuses": {"statuses": {}},
        "a status that is not a string": {"statuses": {uuid: "fine", UNKNOWN: 3}},
        "too long a status": {"statuses": {uuid: "fine", UNKNOWN: "x" * 4097}},
        "too many": {"statuses": {f"zzzzz-dz642-{i:015d}": "x" for i in range(1001)} | {uuid: "fine"}},
        "an unknown field": {"statuses": {uuid: "fine"}, "priority": 5},
        "not an object": {"statuses": [uuid, "fine"]},
    }
    for name, body in bad.items():
        assert refused(admin.put("/containers/scheduling_status", json=body)), name
        assert _status(admin, uuid) == "", name
    refused(alice.put("/containers/scheduling_status", json={"statuses": {uuid: "mine"}}), 403)
    assert _status(admin, uuid) == ""


def test_the_config_says_statuses_may_be_batched(service):
    assert ok(service.client().get("/config"))["batch_scheduling_status"] is True
