"""The janitor (SPEC §3.3, §4.4): dead dispatchers, lost containers, retries with backoff, event retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.support.flows import ok, run
from tests.support.service import request_body

TIMEOUT = 60  # dispatcher_timeout and container_heartbeat_timeout defaults, in seconds



def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def committed(service, **overrides) -> tuple[httpx.Client, dict]:
    alice = service.client(service.token("alice"))
    return alice, ok(alice.post("/container_requests", json=request_body(**overrides)))


def register(admin: httpx.Client, name: str) -> str:
    return ok(admin.post("/dispatchers", json={"name": name, "hostname": "localhost", "backend": "local"}))["uuid"]


def container_token_works(service, token: str) -> bool:
    response = service.client(token).get("/containers/current")
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200



# -- (a) dispatcher liveness --------------------------------------------------------------


def test_silent_dispatcher_loses_its_locked_containers(service):
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    dispatcher = register(admin, "d1")
    locked = ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": dispatcher}))
    assert (locked["state"], locked["lock_count"], locked["dispatcher_uuid"]) == ("Locked", 1, dispatcher)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "staging inputs"}}))
    assert container_token_works(service, locked["auth"])

    service.clock.advance(TIMEOUT - 1)
    report = service.janitor.tick(service.clock())
    assert (report.dead_dispatchers, report.unlocked) == (0, 0)
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Locked"

    service.clock.advance(2)
    report = service.janitor.tick(service.clock())
    assert (report.dead_dispatchers, report.unlocked) == (1, 1)

    container = ok(admin.get(f"/containers/{uuid}"))
    assert container["state"] == "Queued"
    assert container["runtime_status"] == {}
    assert container["lock_count"] == 0, "an attempt lost to a dead dispatcher must not count"
    assert (container["locked_by_uuid"], container["dispatcher_uuid"], container["auth"]) == (None, None, None)
    assert not container_token_works(service, locked["auth"])
    assert ok(admin.get(f"/dispatchers/{dispatcher}"))["alive"] is False

    # Another dispatcher can take it over; the attempt count starts again from what it was.
    relocked = ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": register(admin, "d2")}))
    assert (relocked["state"], relocked["lock_count"]) == ("Locked", 1)

    # A dead dispatcher is buried once, not on every round.
    assert service.janitor.tick(service.clock()).dead_dispatchers == 0


def test_dispatcher_that_keeps_pinging_keeps_its_locks(service):
    admin = service.admin()
    alice = service.client(service.token("alice"))
    live_request = ok(alice.post("/container_requests", json=request_body(command=["echo", "live"])))
    dead_request = ok(alice.post("/container_requests", json=request_body(command=["echo", "dead"])))
    live, dead = register(admin, "live"), register(admin, "dead")
    live_lock = ok(admin.post(f"/containers/{live_request['container_uuid']}/lock", json={"dispatcher_uuid": live}))
    ok(admin.post(f"/containers/{dead_request['container_uuid']}/lock", json={"dispatcher_uuid": dead}))

    for _ in range(4):
        service.clock.advance(TIMEOUT / 2)
        ok(admin.post(f"/dispatchers/{live}/ping"))
        service.janitor.tick(service.clock())

    assert ok(admin.get(f"/containers/{live_request['container_uuid']}"))["state"] == "Locked"
    assert ok(admin.get(f"/containers/{dead_request['container_uuid']}"))["state"] == "Queued"
    assert container_token_works(service, live_lock["auth"])
    assert ok(admin.get(f"/dispatchers/{live}"))["alive"] is True
    assert ok(admin.get(f"/dispatchers/{dead}"))["alive"] is False


def test_dispatcher_death_does_not_kill_running_containers(service):
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    locked = ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": register(admin, "d1")}))
    ok(admin.put(f"/containers/{uuid}", json={"state": "Running"}))

    for _ in range(3):  # crunch-run keeps reporting; the dispatcher is silent
        service.clock.advance(TIMEOUT / 2)
        ok(service.client(locked["auth"]).post(f"/containers/{uuid}/heartbeat"))
        service.janitor.tick(service.clock())

    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Running"
    assert container_token_works(service, locked["auth"])


def test_containers_locked_by_a_dispatcher_declared_dead_earlier_are_reclaimed(service):
    """A dispatcher that was declared dead, comes back only long enough to lock, then dies again."""
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    dispatcher = register(admin, "flaky")
    service.clock.advance(TIMEOUT + 1)
    assert service.janitor.tick(service.clock()).dead_dispatchers == 1

    locked = ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": dispatcher}))
    assert locked["state"] == "Locked"
    service.clock.advance(TIMEOUT - 1)
    service.janitor.tick(service.clock())
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Locked", "locking is a sign of life"

    service.clock.advance(2)
    assert service.janitor.tick(service.clock()).unlocked == 1
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Queued"


def test_a_lock_renews_a_live_dispatchers_ping_at_most_once_a_second(service):
    """Locking is a sign of life, but a scatter locks hundreds a second: the ping is rewritten
    only once it is a second old (a dispatcher is declared dead after a minute)."""
    admin = service.admin()
    dispatcher = register(admin, "busy")
    registered = parse_time(ok(admin.get(f"/dispatchers/{dispatcher}"))["last_ping_at"])

    def lock_one() -> datetime:
        uuid = committed(service, command=["echo", str(service.clock())])[1]["container_uuid"]
        ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": dispatcher}))
        return parse_time(ok(admin.get(f"/dispatchers/{dispatcher}"))["last_ping_at"])

    service.clock.advance(0.5)
    assert lock_one() == registered
    service.clock.advance(0.6)
    assert lock_one() == registered + timedelta(seconds=1.1)


def test_locking_for_an_unregistered_dispatcher_is_refused(service):
    """Otherwise nothing would ever notice that dispatcher die and the container would stay Locked."""
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    response = admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": "zzzzz-dsptc-000000000000000"})
    assert response.status_code == 422, response.text
    assert "dispatcher_uuid" in response.json()["errors"][0]
    container = ok(admin.get(f"/containers/{uuid}"))
    assert (container["state"], container["lock_count"]) == ("Queued", 0)


def test_pinging_an_unknown_dispatcher_is_404(service):
    response = service.admin().post("/dispatchers/zzzzz-dsptc-000000000000000/ping")
    assert response.status_code == 404
    assert response.json()["errors"]


# -- (b) heartbeat timeout and retries ----------------------------------------------------


def test_lost_container_is_cancelled_and_retried_after_a_backoff(service):
    admin = service.admin()
    alice, request = committed(service)
    first = request["container_uuid"]
    run(admin, first)

    service.clock.advance(75)
    lost_at = service.clock()
    report = service.janitor.tick(lost_at)
    assert report.lost_containers == 1

    cancelled = ok(admin.get(f"/containers/{first}"))
    assert cancelled["state"] == "Cancelled"
    assert cancelled["runtime_status"]["error"] == "container lost: no heartbeat from crunch-run for 75 s"
    assert cancelled["runtime_status"]["cause"] == "infrastructure"

    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert request["state"] == "Committed"
    assert request["container_count"] == 2
    assert request["status"] == "Retrying"
    second = request["container_uuid"]
    assert second != first
    retry = ok(admin.get(f"/containers/{second}"))
    assert retry["state"] == "Queued"
    not_before = lost_at + timedelta(seconds=2)
    assert parse_time(retry["scheduling_parameters"]["not_before"]) == not_before

    status = ok(alice.get(f"/container_requests/{request['uuid']}/container_status"))
    assert status == {
        "uuid": second,
        "state": "Queued",
        "scheduling_status": f"Waiting until {not_before:%Y-%m-%dT%H:%M:%S}Z before retrying (attempt 2 of 3).",
    }

    service.clock.advance(1)
    refused = admin.post(f"/containers/{second}/lock")
    assert refused.status_code == 422
    assert "before" in refused.json()["errors"][0]
    assert ok(admin.get(f"/containers/{second}"))["state"] == "Queued"

    service.clock.advance(1)
    assert ok(admin.post(f"/containers/{second}/lock"))["state"] == "Locked"
    status = ok(alice.get(f"/container_requests/{request['uuid']}/container_status"))
    assert "Waiting until" not in status["scheduling_status"]


def test_requests_sharing_a_lost_container_share_its_retry(service):
    admin = service.admin()
    alice, first = committed(service)
    bob = service.client(service.token("bob"))
    second = ok(bob.post("/container_requests", json=request_body()))
    assert second["container_uuid"] == first["container_uuid"]
    lost = first["container_uuid"]
    run(admin, lost)
    service.clock.advance(TIMEOUT + 1)
    assert service.janitor.tick(service.clock()).lost_containers == 1

    first = ok(alice.get(f"/container_requests/{first['uuid']}"))
    second = ok(bob.get(f"/container_requests/{second['uuid']}"))
    assert first["container_count"] == second["container_count"] == 2
    assert first["container_uuid"] == second["container_uuid"] != lost
    assert len(ok(admin.get("/containers"))["items"]) == 2


def test_a_lost_container_nobody_wants_any_more_is_not_retried(service):
    admin = service.admin()
    alice, request = committed(service)
    uuid = request["container_uuid"]
    run(admin, uuid)
    ok(alice.put(f"/container_requests/{request['uuid']}", json={"priority": 0}))
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Running"  # its dispatcher is to stop it

    service.clock.advance(TIMEOUT + 1)
    assert service.janitor.tick(service.clock()).lost_containers == 1
    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (request["state"], request["container_count"], request["container_uuid"]) == ("Final", 1, uuid)
    assert len(ok(admin.get("/containers"))["items"]) == 1


def test_retries_stop_after_container_count_max(service):
    admin = service.admin()
    alice, request = committed(service)
    attempts = []
    delays = []
    for attempt in range(1, 4):
        request = ok(alice.get(f"/container_requests/{request['uuid']}"))
        assert (request["state"], request["container_count"]) == ("Committed", attempt)
        uuid = request["container_uuid"]
        attempts.append(uuid)
        not_before = ok(admin.get(f"/containers/{uuid}"))["scheduling_parameters"].get("not_before")
        if not_before:
            delays.append(parse_time(not_before) - service.clock())
            service.clock.advance(delays[-1].total_seconds())
        run(admin, uuid)
        service.clock.advance(TIMEOUT + 1)
        assert service.janitor.tick(service.clock()).lost_containers == 1

    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert request["state"] == "Final"
    assert (request["container_count"], request["container_uuid"]) == (3, attempts[-1])
    assert delays == [timedelta(seconds=2), timedelta(seconds=4)], "backoff doubles"
    containers = ok(admin.get("/containers"))["items"]
    assert sorted(c["uuid"] for c in containers) == sorted(attempts)
    assert {c["state"] for c in containers} == {"Cancelled"}
    assert service.janitor.tick(service.clock()).lost_containers == 0


def test_container_count_max_one_means_no_retry(service):
    admin = service.admin()
    alice, request = committed(service, container_count_max=1)
    run(admin, request["container_uuid"])
    service.clock.advance(TIMEOUT + 1)
    service.janitor.tick(service.clock())
    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (request["state"], request["container_count"]) == ("Final", 1)


@pytest.mark.parametrize("credential", ["container token", "admin"])
def test_heartbeats_keep_a_running_container_alive(service, credential):
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    locked = run(admin, uuid)
    sender = service.client(locked["auth"]) if credential == "container token" else admin

    for _ in range(3):
        service.clock.advance(TIMEOUT - 10)
        beat = ok(sender.post(f"/containers/{uuid}/heartbeat"))
        assert parse_time(beat["heartbeat_at"]) == service.clock()
        assert service.janitor.tick(service.clock()).lost_containers == 0
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Running"

    service.clock.advance(TIMEOUT + 10)  # the last heartbeat, not started_at, is what counts
    assert service.janitor.tick(service.clock()).lost_containers == 1
    lost = ok(admin.get(f"/containers/{uuid}"))
    assert lost["state"] == "Cancelled"
    assert lost["runtime_status"]["error"] == f"container lost: no heartbeat from crunch-run for {TIMEOUT + 10} s"


def test_lost_container_keeps_what_its_runner_reported(service):
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    run(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"runtime_status": {"activity": "running", "warning": "slow disk"}}))
    service.clock.advance(TIMEOUT + 1)
    service.janitor.tick(service.clock())
    status = ok(admin.get(f"/containers/{uuid}"))["runtime_status"]
    assert status == {
        "activity": "running",
        "warning": "slow disk",
        "error": f"container lost: no heartbeat from crunch-run for {TIMEOUT + 1} s",
        "cause": "infrastructure",
    }


def test_heartbeat_for_a_container_that_is_not_running_is_refused(service):
    admin = service.admin()
    _, request = committed(service)
    uuid = request["container_uuid"]
    locked = ok(admin.post(f"/containers/{uuid}/lock"))
    response = service.client(locked["auth"]).post(f"/containers/{uuid}/heartbeat")
    assert response.status_code == 422
    assert response.json()["errors"]


# -- (c) which failure causes are retried ------------------------------------------------


@pytest.mark.parametrize("cause", ["setup", "unsatisfiable", "timeout", "user"])
def test_permanent_causes_are_not_retried(service, cause):
    admin = service.admin()
    alice, request = committed(service)
    uuid = request["container_uuid"]
    run(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"state": "Cancelled", "runtime_status": {"cause": cause}}))

    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (request["state"], request["container_count"], request["container_uuid"]) == ("Final", 1, uuid)
    assert [c["uuid"] for c in ok(admin.get("/containers"))["items"]] == [uuid]


def test_infrastructure_cause_is_retried(service):
    admin = service.admin()
    alice, request = committed(service)
    uuid = request["container_uuid"]
    run(admin, uuid)
    service.clock.advance(5)
    ok(admin.put(f"/containers/{uuid}", json={"state": "Cancelled", "runtime_status": {"cause": "infrastructure"}}))

    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (request["state"], request["container_count"]) == ("Committed", 2)
    retry = ok(admin.get(f"/containers/{request['container_uuid']}"))
    assert retry["uuid"] != uuid
    assert retry["state"] == "Queued"
    assert retry["runtime_status"] == {}
    assert parse_time(retry["scheduling_parameters"]["not_before"]) == service.clock() + timedelta(seconds=2)


def test_complete_with_nonzero_exit_is_not_retried(service):
    admin = service.admin()
    alice, request = committed(service)
    uuid = request["container_uuid"]
    run(admin, uuid)
    ok(admin.put(f"/containers/{uuid}", json={"state": "Complete", "exit_code": 3}))
    request = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert (request["state"], request["container_count"]) == ("Final", 1)


# -- (d) event retention -----------------------------------------------------------------


def test_events_older_than_the_retention_window_are_deleted(service):
    admin = service.admin()
    retention = service.settings.event_retention
    _, old = committed(service, command=["echo", "old"])
    old_events = ok(admin.get("/events/batch"))["items"]
    assert {e["object_uuid"] for e in old_events} == {old["uuid"], old["container_uuid"]}

    service.clock.advance(retention.total_seconds())
    report = service.janitor.tick(service.clock())
    assert report.events_deleted == 0, "an event exactly as old as the retention window is kept"

    service.clock.advance(1)
    _, new = committed(service, command=["echo", "new"])
    new_events = [e for e in ok(admin.get("/events/batch"))["items"] if e["id"] > old_events[-1]["id"]]
    report = service.janitor.tick(service.clock())
    assert report.events_deleted == len(old_events)

    remaining = ok(admin.get("/events/batch", params={"since": 0}))["items"]
    assert remaining == new_events
    assert {e["object_uuid"] for e in remaining} == {new["uuid"], new["container_uuid"]}
