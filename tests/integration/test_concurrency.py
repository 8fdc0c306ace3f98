"""Races that must have exactly one winner (SPEC §3.2 lock/unlock, §5 reuse), with real threads
and real processes against every database dialect."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid as uuidlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cwl_crunch.settings import Settings
from tests.support.processes import ServerProcess, race_commit, race_locks
from tests.support.service import RunningService, request_body, start_service

ROUNDS = 20
COMMITTERS = 20
JOIN_TIMEOUT = 120
SPAWN = multiprocessing.get_context("spawn")


# -- helpers ---------------------------------------------------------------------------


def unique_body(**overrides: Any) -> dict[str, Any]:
    """A committed request for work nobody has asked for yet."""
    return request_body(command=["echo", f"work {uuidlib.uuid4().hex}"], **overrides)


def queued_container(client: httpx.Client) -> str:
    response = client.post("/container_requests", json=unique_body())
    assert response.status_code == 200, response.text
    return response.json()["container_uuid"]


def token_uuid(service: RunningService, token: str) -> str:
    return service.client(token).get("/users/current").json()["token_uuid"]


def dispatcher_tokens(service: RunningService) -> dict[str, str]:
    """Two admin tokens of two different dispatcher users."""
    return {name: service.token(name, admin=True) for name in ("dispatch-a", "dispatch-b")}


def containers_with_key(admin: httpx.Client, reuse_key: str) -> dict[str, Any]:
    filters = json.dumps([["reuse_key", "=", reuse_key]])
    response = admin.get("/containers", params={"filters": filters})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def second_server(database_url: str, service: RunningService, tmp_path: Path) -> Iterator[ServerProcess]:
    """Another API server process over the same database as `service`."""
    server = ServerProcess(database_url, tmp_path / "second-server")
    yield server
    server.stop()


def race_urls(request: pytest.FixtureRequest, service: RunningService, servers: int) -> list[str]:
    if servers == 1:
        return [service.url]
    return [service.url, request.getfixturevalue("second_server").url]


def assert_one_lock_winner(service: RunningService, uuid: str, outcomes: list[tuple[str, int, Any]],
                           token_uuids: dict[str, str]) -> None:
    statuses = sorted(status for _, status, _ in outcomes)
    assert statuses == [200, 422], f"{uuid}: {outcomes}"
    winner = next(name for name, status, _ in outcomes if status == 200)
    loser_body = next(body for _, status, body in outcomes if status == 422)
    assert any("it is Locked, not Queued" in message for message in loser_body["errors"]), loser_body
    container = service.admin().get(f"/containers/{uuid}").json()
    assert container["state"] == "Locked"
    assert container["lock_count"] == 1
    assert container["locked_by_uuid"] == token_uuids[winner]


# -- two dispatchers locking the same container ------------------------------------------


def test_two_dispatchers_locking_with_threads_have_one_winner(service):
    tokens = dispatcher_tokens(service)
    ids = {name: token_uuid(service, token) for name, token in tokens.items()}
    clients = {name: service.client(token) for name, token in tokens.items()}
    alice = service.client(service.token("alice"))
    for _ in range(ROUNDS):
        uuid = queued_container(alice)
        barrier = threading.Barrier(len(clients))

        def lock(name: str) -> tuple[str, int, Any]:
            barrier.wait(timeout=30)
            response = clients[name].post(f"/containers/{uuid}/lock")
            return name, response.status_code, response.json()

        with ThreadPoolExecutor(len(clients)) as pool:
            outcomes = list(pool.map(lock, clients))
        assert_one_lock_winner(service, uuid, outcomes, ids)


@pytest.mark.parametrize("servers", [1, 2], ids=["one-server", "two-servers"])
def test_two_dispatchers_locking_from_processes_have_one_winner(service, servers, request):
    urls = race_urls(request, service, servers)
    tokens = dispatcher_tokens(service)
    ids = {name: token_uuid(service, token) for name, token in tokens.items()}
    alice = service.client(service.token("alice"))
    uuids = [queued_container(alice) for _ in range(ROUNDS)]
    barrier, results = SPAWN.Barrier(len(tokens)), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=race_locks, args=(urls[i % len(urls)], token, name, uuids, barrier, results))
        for i, (name, token) in enumerate(tokens.items())
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=JOIN_TIMEOUT) for _ in range(len(uuids) * len(workers))]
    for worker in workers:
        worker.join(JOIN_TIMEOUT)
        assert worker.exitcode == 0
    for uuid in uuids:
        outcomes = [(name, status, body) for u, name, status, body in reports if u == uuid]
        assert_one_lock_winner(service, uuid, outcomes, ids)


# -- lock / unlock cycles and max_dispatch_attempts --------------------------------------


def test_lock_count_increments_across_lock_unlock_cycles(service):
    dispatcher = service.client(service.token("dispatch-a", admin=True))
    uuid = queued_container(service.client(service.token("alice")))
    for cycle in range(1, 5):
        locked = dispatcher.post(f"/containers/{uuid}/lock")
        assert locked.status_code == 200, locked.text
        assert (locked.json()["state"], locked.json()["lock_count"]) == ("Locked", cycle)
        noted = dispatcher.patch(f"/containers/{uuid}", json={"runtime_status": {"warning": f"attempt {cycle}"}})
        assert noted.status_code == 200, noted.text
        unlocked = dispatcher.post(f"/containers/{uuid}/unlock")
        assert unlocked.status_code == 200, unlocked.text
        body = unlocked.json()
        assert (body["state"], body["lock_count"], body["locked_by_uuid"]) == ("Queued", cycle, None)
        assert body["runtime_status"] == {}  # nothing leaks into the next dispatch attempt
    assert dispatcher.get(f"/containers/{uuid}").json()["lock_count"] == 4


def test_locking_says_the_runtime_is_being_prepared_and_unlocking_forgets_it(service):
    dispatcher = service.client(service.token("dispatch-a", admin=True))
    uuid = queued_container(service.client(service.token("alice")))
    locked = dispatcher.post(f"/containers/{uuid}/lock")
    assert locked.status_code == 200, locked.text
    assert locked.json()["scheduling_status"] == "Preparing runtime environment."
    unlocked = dispatcher.post(f"/containers/{uuid}/unlock").json()
    assert (unlocked["state"], unlocked["scheduling_status"]) == ("Queued", "")


def test_unlock_by_another_dispatcher_is_refused(service):
    tokens = dispatcher_tokens(service)
    first, second = (service.client(token) for token in tokens.values())
    uuid = queued_container(service.client(service.token("alice")))
    assert first.post(f"/containers/{uuid}/lock").status_code == 200

    refused = second.post(f"/containers/{uuid}/unlock")
    assert refused.status_code == 422
    assert any("locked by another token" in message for message in refused.json()["errors"])
    container = first.get(f"/containers/{uuid}").json()
    assert (container["state"], container["lock_count"]) == ("Locked", 1)
    assert container["locked_by_uuid"] == token_uuid(service, tokens["dispatch-a"])

    assert first.post(f"/containers/{uuid}/unlock").json()["state"] == "Queued"


def _dispatch_until_cancelled(service: RunningService, limit: int) -> None:
    alice = service.client(service.token("alice"))
    dispatcher = service.client(service.token("dispatch-a", admin=True))
    request = alice.post("/container_requests", json=unique_body()).json()
    uuid = request["container_uuid"]
    for attempt in range(1, limit):
        assert dispatcher.post(f"/containers/{uuid}/lock").json()["lock_count"] == attempt
        assert dispatcher.post(f"/containers/{uuid}/unlock").json()["state"] == "Queued"
    assert dispatcher.post(f"/containers/{uuid}/lock").json()["lock_count"] == limit

    gave_up = dispatcher.post(f"/containers/{uuid}/unlock")
    assert gave_up.status_code == 200, gave_up.text
    container = gave_up.json()
    assert container["state"] == "Cancelled"
    assert container["runtime_status"]["error"] == (
        f"Failed to start container. Cancelled after exceeding max_dispatch_attempts (lock_count={limit})"
    )
    assert container["finished_at"] is not None
    again = dispatcher.post(f"/containers/{uuid}/lock")
    assert again.status_code == 422
    # An infrastructure failure: the request is retried with a new container (SPEC §4.4).
    retried = alice.get(f"/container_requests/{request['uuid']}").json()
    assert retried["state"] == "Committed"
    assert retried["container_uuid"] not in (None, uuid)
    assert retried["container_count"] == 2


def test_unlock_at_the_default_max_dispatch_attempts_cancels(service):
    assert service.admin().get("/config").json()["max_dispatch_attempts"] == 10
    _dispatch_until_cancelled(service, 10)


@pytest.mark.parametrize("limit", [1, 3])
def test_unlock_at_a_configured_max_dispatch_attempts_cancels(store, limit):
    running = start_service(store, Settings(database_url=store.url, max_dispatch_attempts=limit))
    try:
        _dispatch_until_cancelled(running, limit)
    finally:
        running.stop()


# -- concurrent commits of the same new work ----------------------------------------------


def assert_one_container(service: RunningService, outcomes: list[tuple[int, Any]]) -> None:
    assert [status for status, _ in outcomes] == [200] * COMMITTERS, outcomes
    requests = [body for _, body in outcomes]
    assert len({r["uuid"] for r in requests}) == COMMITTERS
    assert all(r["container_count"] == 1 and r["state"] == "Committed" for r in requests)
    container_uuids = {r["container_uuid"] for r in requests}
    assert len(container_uuids) == 1, container_uuids
    admin = service.admin()
    container = admin.get(f"/containers/{container_uuids.pop()}").json()
    assert (container["state"], container["priority"] > 0) == ("Queued", True)
    listed = containers_with_key(admin, container["reuse_key"])
    assert listed["items_available"] == 1
    assert [c["uuid"] for c in listed["items"]] == [container["uuid"]]


def test_concurrent_commits_of_new_work_from_threads_create_one_container(service):
    body = unique_body()
    clients = [service.client(service.token(("alice", "bob")[i % 2])) for i in range(COMMITTERS)]
    for client in clients:
        client.get("/config")  # connect before the race, not during it
    barrier = threading.Barrier(COMMITTERS)

    def commit(client: httpx.Client) -> tuple[int, Any]:
        barrier.wait(timeout=30)
        response = client.post("/container_requests", json=body)
        return response.status_code, response.json()

    with ThreadPoolExecutor(COMMITTERS) as pool:
        outcomes = list(pool.map(commit, clients))
    assert_one_container(service, outcomes)


@pytest.mark.parametrize("servers", [1, 2], ids=["one-server", "two-servers"])
def test_concurrent_commits_of_new_work_from_processes_create_one_container(service, servers, request):
    urls = race_urls(request, service, servers)
    body = unique_body()
    tokens = [service.token(("alice", "bob")[i % 2]) for i in range(COMMITTERS)]
    barrier, results = SPAWN.Barrier(COMMITTERS), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=race_commit, args=(urls[i % len(urls)], token, body, barrier, results))
        for i, token in enumerate(tokens)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=JOIN_TIMEOUT) for _ in workers]
    for worker in workers:
        worker.join(JOIN_TIMEOUT)
        assert worker.exitcode == 0
    assert_one_container(service, outcomes)


# -- containers nobody wants cannot be locked ----------------------------------------------


def test_lock_of_a_container_whose_only_request_was_cancelled_is_refused(service):
    alice = service.client(service.token("alice"))
    request = alice.post("/container_requests", json=unique_body()).json()
    cancelled = alice.patch(f"/container_requests/{request['uuid']}", json={"priority": 0})
    assert cancelled.status_code == 200, cancelled.text
    admin = service.admin()
    container = admin.get(f"/containers/{request['container_uuid']}").json()
    assert (container["state"], container["priority"]) == ("Cancelled", 0)

    refused = admin.post(f"/containers/{container['uuid']}/lock")
    assert refused.status_code == 422
    after = admin.get(f"/containers/{container['uuid']}").json()
    assert (after["state"], after["lock_count"], after["locked_by_uuid"]) == ("Cancelled", 0, None)


def test_lock_of_a_held_container_is_refused_until_released(service):
    alice = service.client(service.token("alice"))
    request = alice.post("/container_requests", json=unique_body()).json()
    uuid = request["container_uuid"]
    assert alice.post(f"/container_requests/{request['uuid']}/hold").status_code == 200
    admin = service.admin()
    held = admin.get(f"/containers/{uuid}").json()
    assert (held["state"], held["priority"]) == ("Queued", 0)

    refused = admin.post(f"/containers/{uuid}/lock")
    assert refused.status_code == 422
    assert any("priority is 0" in message for message in refused.json()["errors"])
    assert admin.get(f"/containers/{uuid}").json()["lock_count"] == 0

    assert alice.post(f"/container_requests/{request['uuid']}/release").status_code == 200
    locked = admin.post(f"/containers/{uuid}/lock")
    assert (locked.status_code, locked.json()["lock_count"]) == (200, 1)


def test_lock_races_a_cancel_and_never_locks_an_unwanted_container(service):
    """Cancelling while dispatchers lock: the container ends either Cancelled or Locked with priority > 0."""
    alice = service.client(service.token("alice"))
    dispatcher = service.client(service.token("dispatch-a", admin=True))
    admin = service.admin()
    for _ in range(ROUNDS // 2):
        request = alice.post("/container_requests", json=unique_body()).json()
        uuid = request["container_uuid"]
        barrier = threading.Barrier(2)

        def lock() -> int:
            barrier.wait(timeout=30)
            return dispatcher.post(f"/containers/{uuid}/lock").status_code

        def cancel() -> int:
            barrier.wait(timeout=30)
            return alice.patch(f"/container_requests/{request['uuid']}", json={"priority": 0}).status_code

        with ThreadPoolExecutor(2) as pool:
            lock_future, cancel_future = pool.submit(lock), pool.submit(cancel)
            lock_status, cancel_status = lock_future.result(), cancel_future.result()
        assert cancel_status == 200
        container = admin.get(f"/containers/{uuid}").json()
        # Whichever came first, the request no longer wants the container, so it ends Cancelled.
        assert container["state"] == "Cancelled", (lock_status, container)
        assert container["priority"] == 0
        assert lock_status in (200, 422)
