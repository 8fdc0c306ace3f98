"""Every (from, to) pair of container and request states, and the per-state attribute tables."""

from __future__ import annotations

import itertools

import pytest

from cwl_crunch.domain.states import CONTAINER_TRANSITIONS, REQUEST_TRANSITIONS, ContainerState, RequestState
from tests.support.flows import commit, complete, lock, ok, run

CONTAINER_STATES = [s.value for s in ContainerState]
REQUEST_STATES = [s.value for s in RequestState]


def _container_in(service, state: str) -> str:
    """A container brought to `state` through the API."""
    alice = service.client(service.token("alice"))
    admin = service.admin()
    uuid = commit(alice)["container_uuid"]
    if state == "Locked":
        lock(admin, uuid)
    elif state == "Running":
        run(admin, uuid)
    elif state == "Complete":
        complete(admin, uuid)
    elif state == "Cancelled":
        ok(admin.put(f"/containers/{uuid}", json={"state": "Cancelled"}))
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == state
    return uuid


@pytest.mark.parametrize("old,new", list(itertools.product(CONTAINER_STATES, CONTAINER_STATES)))
def test_container_state_pairs(service, old, new):
    uuid = _container_in(service, old)
    admin = service.admin()
    body = {"state": new, **({"exit_code": 0} if new == "Complete" and old == "Running" else {})}
    response = admin.put(f"/containers/{uuid}", json=body)
    allowed = ContainerState(new) in CONTAINER_TRANSITIONS[ContainerState(old)]
    if old == new:
        assert response.status_code == 200, response.text  # no change is not a transition
    elif allowed:
        assert response.status_code == 200, response.text
        assert response.json()["state"] == new
    else:
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [f"cannot change state from {old} to {new}"]
    expected = new if allowed else old
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == expected


def _request_in(service, state: str) -> tuple[str, object]:
    alice = service.client(service.token("alice"))
    if state == "Uncommitted":
        return ok(alice.post("/container_requests", json={"state": "Uncommitted", "command": ["true"]}))["uuid"], alice
    request = commit(alice)
    if state == "Final":
        complete(service.admin(), request["container_uuid"])
    assert ok(alice.get(f"/container_requests/{request['uuid']}"))["state"] == state
    return request["uuid"], alice


@pytest.mark.parametrize("old,new", list(itertools.product(REQUEST_STATES, REQUEST_STATES)))
def test_request_state_pairs(service, old, new):
    uuid, alice = _request_in(service, old)
    body = {"state": new}
    if (old, new) == ("Uncommitted", "Committed"):
        body.update(cwd="/", output_path="/out", mounts={"/out": {"kind": "tmp"}})
    response = alice.put(f"/container_requests/{uuid}", json=body)
    allowed = RequestState(new) in REQUEST_TRANSITIONS[RequestState(old)]
    if old == new and old != "Final":
        assert response.status_code == 200, response.text
    elif old == new:
        # Nothing but annotations may change once Final, `state` included.
        assert response.status_code == 422
        assert response.json()["errors"] == ["state: cannot be changed while the request is Final"]
    elif allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [f"cannot change state from {old} to {new}"]


def test_committing_with_priority_zero_is_refused(service):
    alice = service.client(service.token("alice"))
    response = alice.post("/container_requests", json={**_minimal(), "state": "Committed", "priority": 0})
    assert response.status_code == 422
    assert "priority" in response.json()["errors"][0]


def _minimal():
    return {"command": ["true"], "cwd": "/", "output_path": "/out", "mounts": {"/out": {"kind": "tmp"}}}


@pytest.mark.parametrize(
    "state,attribute,value",
    [
        ("Queued", "exit_code", 0),
        ("Queued", "runtime_status", {"activity": "x"}),
        ("Queued", "progress", 0.5),
        ("Locked", "exit_code", 0),
        ("Locked", "output", "0" * 64 + "+2"),
        ("Complete", "runtime_status", {"warning": "late"}),
        ("Complete", "output", "0" * 64 + "+2"),
        ("Cancelled", "progress", 1.0),
    ],
)
def test_attributes_outside_the_state_table_are_refused(service, state, attribute, value):
    uuid = _container_in(service, state)
    admin = service.admin()
    before = ok(admin.get(f"/containers/{uuid}"))
    response = admin.put(f"/containers/{uuid}", json={attribute: value})
    assert response.status_code == 422
    assert response.json()["errors"] == [f"{attribute}: cannot be changed while the container is {state}"]
    assert ok(admin.get(f"/containers/{uuid}"))[attribute] == before[attribute]


def test_priority_is_never_client_written(service):
    uuid = _container_in(service, "Queued")
    response = service.admin().put(f"/containers/{uuid}", json={"priority": 1})
    assert response.status_code == 422


def test_completing_needs_an_exit_code(service):
    uuid = _container_in(service, "Running")
    response = service.admin().put(f"/containers/{uuid}", json={"state": "Complete"})
    assert response.status_code == 422
    assert response.json()["errors"] == ["exit_code: required to complete a container"]


def test_committed_definition_is_frozen(service):
    alice = service.client(service.token("alice"))
    request = commit(alice)
    response = alice.put(f"/container_requests/{request['uuid']}", json={"command": ["rm", "-rf", "/"]})
    assert response.status_code == 422
    assert response.json()["errors"] == ["command: cannot be changed while the request is Committed"]
    # Annotations stay editable.
    assert ok(alice.put(f"/container_requests/{request['uuid']}", json={"name": "renamed"}))["name"] == "renamed"


def test_running_and_finishing_set_timestamps_and_clear_secrets(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    request = commit(alice, secret_mounts={"/secret": {"kind": "text", "content": "s3cr3t"}})
    uuid = request["container_uuid"]
    plain = commit(alice, command=["echo", "no secrets"])["container_uuid"]
    assert [ok(admin.get(f"/containers/{u}"))["has_secret_mounts"] for u in (uuid, plain)] == [True, False]
    running = run(admin, uuid)
    assert running["started_at"] is not None and running["finished_at"] is None
    assert running["auth"]  # the container token, for the admin only
    assert running["has_secret_mounts"]  # what crunch-run reads to know it must ask for them
    done = complete(admin, uuid)
    assert done["finished_at"] is not None
    assert done["auth"] is None
    assert done["has_secret_mounts"] is False
    with service.store.read() as tx:
        assert tx.get_container(uuid)["secret_mounts"] == {}
