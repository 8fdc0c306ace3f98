"""The dispatcher's rounds against a real service: when it lists the queue, which events wake it.

The backend is a recording stand-in (it starts nothing), so these tests see exactly what a round
decides; tests/integration/test_execution.py runs real crunch-runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cwl_crunch.client import Client
from cwl_crunch.dispatch import statuses
from cwl_crunch.dispatch.backends import Capacity, Tracking
from cwl_crunch.dispatch.dispatcher import Dispatcher
from cwl_crunch.dispatch.queue_events import changes_the_queue, worth_a_round
from tests.support.flows import commit, ok

GiB = 1 << 30


class RecordingBackend:
    name = "recording"
    queue_activity = None

    def __init__(self, vcpus: float | None, locks_itself: bool = False) -> None:
        self.capacity = Capacity(vcpus=vcpus, ram=None if vcpus is None else 64 * GiB)
        self.locks_itself = locks_itself
        self.started: list[str] = []
        self.states: list[str] = []  # each started container's state as it was handed over

    def start(self, container: dict[str, Any]) -> None:
        self.started.append(container["uuid"])
        self.states.append(container.get("state", "Queued"))  # (a queue entry says no state: Queued)

    def alive(self) -> set[str]:
        return set(self.started)

    def bind(self, dispatcher_uuid: str) -> None:
        pass

    def track(self, mine: list[dict[str, Any]], now: float) -> Tracking:
        return Tracking()


class CountingClient(Client):
    def __init__(self, *args: Any, batch_statuses: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_listings = 0
        self.reconciliations = 0  # listings of this dispatcher's own containers
        self.sent: list[tuple[str, str]] = []  # (method, path) of each request
        self.batch_statuses = batch_statuses  # False: /config answers as a server without the batch call

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        self.sent.append((method, path))
        answer = super().request(method, path, body, **kwargs)
        if path == "/config" and not self.batch_statuses:
            answer.pop("batch_scheduling_status")
        return answer

    def list(self, resource: str, **kwargs: Any):  # type: ignore[no-untyped-def, override]
        filters = kwargs.get("filters") or []
        if any(f[0] == "state" and f[2] == "Queued" for f in filters):
            self.queue_listings += 1
        if any(f[0] == "dispatcher_uuid" for f in filters):
            self.reconciliations += 1
        return super().list(resource, **kwargs)


def _dispatcher(service: Any, vcpus: float | None, batch_statuses: bool = True,
                locks_itself: bool = False) -> tuple[Dispatcher, RecordingBackend, CountingClient]:
    api = CountingClient(service.url, service.admin_token, batch_statuses=batch_statuses)
    backend = RecordingBackend(vcpus, locks_itself)
    dispatcher = Dispatcher(api, backend)
    dispatcher.register()
    return dispatcher, backend, api


def test_a_round_reuses_a_recent_queue_listing_until_new_work_arrives(service):
    alice = service.client(service.token("alice"))
    first = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(3)]
    dispatcher, backend, api = _dispatcher(service, vcpus=1)

    dispatcher.tick(now=100.0, queue_max_age=10.0)
    assert len(backend.started) == 1 and backend.started[0] in first
    assert api.queue_listings == 1

    backend.started.clear()  # the first container "finished": capacity is free again
    dispatcher.tick(now=101.0, queue_max_age=10.0)
    assert api.queue_listings == 1, "a round after a state change alone must not list the queue again"
    assert len(backend.started) == 1 and backend.started[0] in first

    dispatcher._queue_stale.set()  # what an event announcing new work does
    newer = commit(alice, command=["echo", "new"], priority=1000)["container_uuid"]
    backend.started.clear()
    dispatcher.tick(now=102.0, queue_max_age=10.0)
    assert api.queue_listings == 2
    assert backend.started == [newer], "the fresh listing puts the new, higher-priority work first"

    backend.started.clear()
    dispatcher.tick(now=200.0, queue_max_age=10.0)
    assert api.queue_listings == 3, "a listing older than queue_max_age is refreshed"


def test_new_work_announced_by_its_event_is_started_without_listing_the_queue(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    dispatcher, backend, api = _dispatcher(service, vcpus=1)
    dispatcher.tick(now=100.0, queue_max_age=10.0)
    assert api.queue_listings == 1 and backend.started == []

    since = admin.get("/events/batch").json()["last_id"]
    low = commit(alice, command=["echo", "low"], priority=10)["container_uuid"]
    high = commit(alice, command=["echo", "high"], priority=1000)["container_uuid"]
    created = [e for e in admin.get("/events/batch", params={"since": since}).json()["items"]
               if e["object_kind"] == "arvados#container" and e["event_type"] == "create"]
    assert [e["object_uuid"] for e in created] == [low, high]
    entries = [e["properties"]["queue_entry"] for e in created]
    assert entries[0] == {**entries[0], "runtime_constraints": {"vcpus": 1, "ram": 1 << 28},
                          "scheduling_parameters": {}, "lock_count": 0}
    assert 0 < entries[0]["priority"] < entries[1]["priority"]  # (the container's, from its request's)
    assert all(dispatcher.heard(event) for event in created)
    assert dispatcher.heard(created[1]), "an event heard twice is harmless"

    dispatcher.tick(now=101.0, queue_max_age=10.0)
    assert api.queue_listings == 1, "the events said all a round needs"
    assert backend.started == [high], "the higher priority goes first, as in a listing"
    backend.started.clear()  # finished: the other one fits now
    dispatcher.tick(now=102.0, queue_max_age=10.0)
    assert (api.queue_listings, backend.started) == (1, [low])


def test_following_events_the_run_loop_lists_the_queue_only_every_few_seconds(service):
    alice = service.client(service.token("alice"))
    dispatcher, backend, api = _dispatcher(service, vcpus=4)
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run, kwargs={"interval": 0.05, "stop": stop}, daemon=True)
    loop.start()
    try:
        for i in range(3):  # each new container starts from its create event, within a round or two
            uuid = commit(alice, command=["echo", str(i)])["container_uuid"]
            deadline = time.monotonic() + 5
            while uuid not in backend.started and time.monotonic() < deadline:
                time.sleep(0.01)
            assert uuid in backend.started
            time.sleep(0.2)  # a few more rounds, with nothing new
    finally:
        stop.set()
        loop.join(5)
    assert not loop.is_alive()
    # About 20 rounds ran; the queue was listed by the first alone (QUEUE_LISTING_SECONDS is 5 s).
    assert api.queue_listings == 1


@pytest.mark.parametrize("vcpus, most", [(4, 1), (None, None)])
def test_following_events_the_run_loop_reconciles_a_local_backend_only_every_few_seconds(service, vcpus, most):
    """A backend the dispatcher counts capacity for (local) knows its live crunch-runs itself, so
    the listing of this dispatcher's containers waits as long as the queue's; one that schedules
    itself (Slurm) is followed every round."""
    dispatcher, _, api = _dispatcher(service, vcpus=vcpus)
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run, kwargs={"interval": 0.05, "stop": stop}, daemon=True)
    loop.start()
    time.sleep(1.0)  # about 20 rounds
    stop.set()
    loop.join(5)
    assert not loop.is_alive()
    if most is not None:
        assert api.reconciliations == most
    else:
        assert api.reconciliations >= 8


def test_a_backend_that_locks_itself_gets_queued_work_which_counts_before_it_is_locked(service):
    """With crunch-run locking its own container (the local backend), the dispatcher sends no lock
    and goes on at once; a container handed over but not yet locked still takes its place when
    the dispatcher reconciles, so capacity is never exceeded, and frees it when its crunch-run ends."""
    alice = service.client(service.token("alice"))
    queued = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(3)]
    dispatcher, backend, api = _dispatcher(service, vcpus=2, locks_itself=True)

    dispatcher.tick(now=100.0, queue_max_age=0.0)
    assert len(backend.started) == 2 and set(backend.started) < set(queued)
    assert backend.states == ["Queued", "Queued"]
    assert not [path for _, path in api.sent if path.endswith("/lock")], "crunch-run locks, not the dispatcher"
    for uuid in queued:
        assert ok(service.admin().get(f"/containers/{uuid}"))["state"] == "Queued"

    reconciled = api.reconciliations
    dispatcher.tick(now=101.0, queue_max_age=0.0)  # reconciles: neither is Locked yet, both are alive
    assert api.reconciliations == reconciled + 1
    assert len(backend.started) == 2, "two handed over and alive fill both vCPUs"

    backend.started.pop(0)  # that crunch-run ended (it lost its lock, say): its vCPU is free again
    dispatcher.tick(now=102.0, queue_max_age=0.0)
    assert len(backend.started) == 2 and len(set(backend.started)) == 2


def test_work_handed_over_and_still_queued_is_not_handed_over_twice(service):
    alice = service.client(service.token("alice"))
    queued = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(2)]
    dispatcher, backend, _ = _dispatcher(service, vcpus=3, locks_itself=True)
    dispatcher.tick(now=100.0, queue_max_age=0.0)
    assert sorted(backend.started) == sorted(queued)

    dispatcher.tick(now=101.0, queue_max_age=0.0)  # listed again, both still Queued; a vCPU is free
    assert sorted(backend.started) == sorted(queued)
    third = commit(alice, command=["echo", "3"])["container_uuid"]
    dispatcher.tick(now=102.0, queue_max_age=0.0)
    assert sorted(backend.started) == sorted([*queued, third])


def test_a_plain_tick_always_lists_the_queue(service):
    alice = service.client(service.token("alice"))
    commit(alice, command=["echo", "a"])
    dispatcher, _, api = _dispatcher(service, vcpus=0.5)  # nothing fits: the listing is all a round does
    dispatcher.tick(now=1.0)
    dispatcher.tick(now=1.1)
    assert api.queue_listings == 2


def _scheduling_status(service: Any, uuid: str) -> str:
    return service.admin().get(f"/containers/{uuid}").json()["scheduling_status"]


def test_waiting_work_is_told_why_once_it_has_waited_a_second_and_a_long_queue_is_updated_rarely(service):
    alice = service.client(service.token("alice"))
    queued = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(3)]
    dispatcher, backend, _ = _dispatcher(service, vcpus=1)

    dispatcher.tick(now=10.0)  # one starts and keeps the only vCPU; two wait
    waiting = [u for u in queued if u not in backend.started]
    assert len(waiting) == 2
    assert [_scheduling_status(service, u) for u in waiting] == ["", ""], "no status before a second of waiting"
    dispatcher.tick(now=11.0)
    statuses = sorted(_scheduling_status(service, u) for u in waiting)
    assert statuses == [f"Waiting in queue at position {n}. All 1 vCPUs are in use." for n in (1, 2)]

    # A more urgent container moves the others down a place; positions alone are republished only
    # after REPUBLISH_SECONDS (the queue is short), so nothing changes at 12 s and both at 16.5 s.
    dispatcher._queue_stale.set()
    commit(alice, command=["echo", "urgent"], priority=1000)
    dispatcher.tick(now=12.0)
    assert sorted(_scheduling_status(service, u) for u in waiting) == statuses
    dispatcher.tick(now=16.5)
    assert sorted(_scheduling_status(service, u)[:31] for u in waiting) == [
        f"Waiting in queue at position {n}." for n in (2, 3)]


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one by one"])
def test_a_rounds_scheduling_statuses_go_out_in_one_call_where_the_api_takes_many(service, batch):
    alice = service.client(service.token("alice"))
    queued = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(4)]
    dispatcher, backend, api = _dispatcher(service, vcpus=1, batch_statuses=batch)
    dispatcher.tick(now=10.0)
    dispatcher.tick(now=11.0)  # three have waited a second: each is told why

    waiting = [u for u in queued if u not in backend.started]
    sent = [r for r in api.sent if r[0] == "PUT"]
    if batch:
        assert sent == [("PUT", "/containers/scheduling_status")]
    else:
        assert sorted(sent) == sorted(("PUT", f"/containers/{u}/scheduling_status") for u in waiting)
    assert sorted(_scheduling_status(service, u) for u in waiting) == [
        f"Waiting in queue at position {n}. All 1 vCPUs are in use." for n in (1, 2, 3)]
    assert api.sent.count(("GET", "/config")) == 1  # asked once, when the first status is sent
    dispatcher.tick(now=11.5)  # nothing new to say
    assert [r for r in api.sent if r[0] == "PUT"] == sent


def test_a_long_queues_statuses_are_sent_in_calls_of_a_bounded_size(service, monkeypatch):
    monkeypatch.setattr(statuses, "STATUS_BATCH", 2)
    alice = service.client(service.token("alice"))
    queued = [commit(alice, command=["echo", str(i)])["container_uuid"] for i in range(6)]
    dispatcher, backend, api = _dispatcher(service, vcpus=1)
    dispatcher.tick(now=10.0)
    dispatcher.tick(now=11.0)
    assert [r for r in api.sent if r[0] == "PUT"] == [("PUT", "/containers/scheduling_status")] * 3
    assert all(_scheduling_status(service, u).startswith("Waiting in queue") for u in queued if u not in backend.started)


def _event(event_type: str, old: str | None, new: str | None, changed: list[str] | None = None) -> dict[str, Any]:
    return {"event_type": event_type, "object_kind": "arvados#container",
            "properties": {"old_state": old, "new_state": new, "changed": changed or []}}


def test_which_container_events_wake_the_dispatcher():
    new_work = _event("create", None, "Queued")
    unlocked = _event("update", "Locked", "Queued", ["state"])
    reprioritised = _event("update", "Queued", "Queued", ["priority"])
    finished = _event("update", "Running", "Complete", ["state", "exit_code"])
    started = _event("update", "Locked", "Running", ["state", "started_at"])
    status = _event("update", "Running", "Running", ["runtime_status"])
    scheduling = _event("update", "Queued", "Queued", ["scheduling_status"])

    assert all(changes_the_queue(e) for e in (new_work, unlocked, reprioritised))
    assert not any(changes_the_queue(e) for e in (finished, status, scheduling))
    assert worth_a_round(finished)
    assert worth_a_round(unlocked) and worth_a_round(reprioritised)
    assert not any(worth_a_round(e) for e in (started, status, scheduling))
