"""Authentication and confinement (SPEC §2, §13 security): users, admins, container tokens, secrets, CLI tokens."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from cwl_crunch.services.auth import issue_token
from cwl_crunch.store.schema import tokens
from tests.support.flows import ok, refused
from tests.support.processes import ServerProcess
from tests.support.service import request_body

PDH = hashlib.sha256(b"").hexdigest() + "+0"




def user_of(client: httpx.Client) -> str:
    return ok(client.get("/users/current"))["uuid"]


# -- authentication ----------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/container_requests"),
    ("POST", "/container_requests"),
    ("GET", "/container_requests/{request}"),
    ("PUT", "/container_requests/{request}"),
    ("GET", "/container_requests/{request}/container_status"),
    ("GET", "/containers"),
    ("GET", "/containers/current"),
    ("GET", "/containers/{container}"),
    ("POST", "/containers/{container}/lock"),
    ("POST", "/containers/{container}/heartbeat"),
    ("PUT", "/containers/scheduling_status"),
    ("POST", "/dispatchers"),
    ("GET", "/collections"),
    ("GET", "/users/current"),
    ("GET", "/events/batch"),
    ("GET", "/events"),
]
BAD_CREDENTIALS = {
    "none": {},
    "unknown token": {"Authorization": "Bearer 0123456789abcdefghijklmnopqrstuvwxyz0123456789ab"},
    "scheme without token": {"Authorization": "Bearer"},
    "other scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "huge token": {"Authorization": "Bearer " + "x" * 10_000},
}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_no_or_bad_token_is_401(service, method, path):
    request = ok(service.client(service.token("alice")).post("/container_requests", json=request_body()))
    url = path.format(request=request["uuid"], container=request["container_uuid"])
    body = request_body() if method == "POST" and path == "/container_requests" else {}
    with httpx.Client(base_url=service.url + "/arvados/v1", timeout=5) as client:
        for name, headers in BAD_CREDENTIALS.items():
            response = client.request(method, url, headers=headers, json=body)
            refused(response, 401)
            assert response.headers.get("www-authenticate") == "Bearer", name
    assert ok(service.admin().get(f"/containers/{request['container_uuid']}"))["state"] == "Queued"


def test_config_needs_no_token(service):
    with httpx.Client(base_url=service.url + "/arvados/v1", timeout=5) as client:
        assert ok(client.get("/config"))["cluster_id"] == service.settings.cluster_id


# -- what a normal user may not do ------------------------------------------------------


def test_a_token_stops_working_when_it_expires_even_if_recently_used(service):
    """User tokens are cached by the server for a minute; expiry is still checked at every use."""
    user_uuid = user_of(service.client(service.token("erin")))
    with service.store.write() as tx:
        token_uuid, secret = issue_token(tx, service.settings.cluster_id, user_uuid, service.clock())
        expiry = tokens.update().where(tokens.c.uuid == token_uuid).values(expires_at=service.clock() + timedelta(seconds=60))
        tx.conn.execute(expiry)
    client = service.client(secret)
    assert ok(client.get("/users/current"))["uuid"] == user_uuid
    assert ok(client.get("/users/current"))["uuid"] == user_uuid  # now from the cache
    service.clock.advance(61)
    assert refused(client.get("/users/current"), 401)


def test_normal_user_cannot_act_as_a_dispatcher(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    uuid = ok(alice.post("/container_requests", json=request_body()))["container_uuid"]
    dispatcher = ok(admin.post("/dispatchers", json={"name": "d"}))["uuid"]

    refused(alice.post(f"/containers/{uuid}/lock"), 403)
    refused(alice.put(f"/containers/{uuid}", json={"state": "Locked"}), 403)
    refused(alice.put(f"/containers/{uuid}", json={"scheduling_status": "mine now"}), 403)
    refused(alice.put(f"/containers/{uuid}/scheduling_status", json={"scheduling_status": "mine now"}), 403)
    refused(alice.post("/dispatchers", json={"name": "rogue"}), 403)
    refused(alice.post(f"/dispatchers/{dispatcher}/ping"), 403)
    refused(alice.get(f"/dispatchers/{dispatcher}"), 403)

    locked = ok(admin.post(f"/containers/{uuid}/lock"))
    refused(alice.post(f"/containers/{uuid}/unlock"), 403)
    refused(alice.put(f"/containers/{uuid}", json={"state": "Running"}), 403)
    refused(alice.put(f"/containers/{uuid}", json={"runtime_status": {"error": "forged"}}), 403)
    ok(admin.put(f"/containers/{uuid}", json={"state": "Running"}))
    refused(alice.put(f"/containers/{uuid}", json={"state": "Complete", "exit_code": 0}), 403)
    refused(alice.post(f"/containers/{uuid}/heartbeat"), 403)

    container = ok(admin.get(f"/containers/{uuid}"))
    assert (container["state"], container["lock_count"], container["runtime_status"]) == ("Running", 1, {})
    assert container["heartbeat_at"] == container["started_at"]
    assert container["locked_by_uuid"] == locked["locked_by_uuid"]


def test_users_see_only_their_own_requests(service):
    alice = service.client(service.token("alice"))
    bob = service.client(service.token("bob"))
    mine = ok(alice.post("/container_requests", json=request_body(command=["echo", "alice"])))
    theirs = ok(bob.post("/container_requests", json=request_body(command=["echo", "bob"])))
    uuid = theirs["uuid"]
    missing = uuid[:-5] + ("00000" if not uuid.endswith("00000") else "11111")

    for target in (uuid, missing):
        refused(alice.get(f"/container_requests/{target}"), 404)
        refused(alice.put(f"/container_requests/{target}", json={"name": "mine"}), 404)
        refused(alice.delete(f"/container_requests/{target}"), 404)
        refused(alice.get(f"/container_requests/{target}/container_status"), 404)
        refused(alice.get(f"/container_requests/{target}/reuse"), 404)
        refused(alice.post(f"/container_requests/{target}/hold"), 404)
        refused(alice.post(f"/container_requests/{target}/release"), 404)
        refused(alice.post(f"/container_requests/{target}/retry"), 404)
    # Invisible and non-existent look the same, so existence does not leak.
    assert len(refused(alice.get(f"/container_requests/{uuid}"), 404)) == len(
        refused(alice.get(f"/container_requests/{missing}"), 404)
    )

    listed = ok(alice.get("/container_requests"))
    assert [r["uuid"] for r in listed["items"]] == [mine["uuid"]]
    assert listed["items_available"] == 1
    filtered = ok(alice.get("/container_requests", params={"filters": json.dumps([["uuid", "=", uuid]])}))
    assert (filtered["items"], filtered["items_available"]) == ([], 0)

    bobs = ok(bob.get(f"/container_requests/{uuid}"))
    assert bobs["name"] == "test", "bob's request is untouched"
    assert bobs["state"] == "Committed"
    assert ok(service.admin().get("/container_requests"))["items_available"] == 2


def test_users_see_only_the_containers_their_requests_reach(service):
    admin = service.admin()
    alice = service.client(service.token("alice"))
    bob = service.client(service.token("bob"))
    mine = ok(alice.post("/container_requests", json=request_body(command=["echo", "alice"])))
    theirs = ok(bob.post("/container_requests", json=request_body(command=["echo", "bob"])))

    refused(alice.get(f"/containers/{theirs['container_uuid']}"), 404)
    assert [c["uuid"] for c in ok(alice.get("/containers"))["items"]] == [mine["container_uuid"]]
    assert len(ok(admin.get("/containers"))["items"]) == 2

    # Reusing bob's container lets alice see it (but still not bob's request).
    shared = ok(alice.post("/container_requests", json=request_body(command=["echo", "bob"])))
    assert shared["container_uuid"] == theirs["container_uuid"]
    assert ok(alice.get(f"/containers/{theirs['container_uuid']}"))["uuid"] == theirs["container_uuid"]
    assert {c["uuid"] for c in ok(alice.get("/containers"))["items"]} == {
        mine["container_uuid"], theirs["container_uuid"]
    }
    refused(alice.get(f"/container_requests/{theirs['uuid']}"), 404)


# -- container tokens --------------------------------------------------------------------


@pytest.fixture
def running(service) -> dict:
    """Alice's request with its container Running; `auth` is the container token."""
    alice = service.client(service.token("alice"))
    admin = service.admin()
    request = ok(alice.post("/container_requests", json=request_body(command=["workflow-runner"])))
    locked = ok(admin.post(f"/containers/{request['container_uuid']}/lock"))
    ok(admin.put(f"/containers/{request['container_uuid']}", json={"state": "Running"}))
    return {"alice": alice, "admin": admin, "request": request, "uuid": request["container_uuid"], "auth": locked["auth"]}


def test_auth_is_shown_to_admins_only(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    uuid = ok(alice.post("/container_requests", json=request_body()))["container_uuid"]
    locked = ok(admin.post(f"/containers/{uuid}/lock"))
    assert isinstance(locked["auth"], str) and len(locked["auth"]) >= 32
    assert ok(admin.get(f"/containers/{uuid}"))["auth"] == locked["auth"]

    for client in (alice, service.client(locked["auth"])):
        assert "auth" not in ok(client.get(f"/containers/{uuid}"))
        assert all("auth" not in c for c in ok(client.get("/containers"))["items"])
    assert "auth" not in ok(service.client(locked["auth"]).get("/containers/current"))
    refused(alice.get("/containers", params={"filters": json.dumps([["auth", "=", locked["auth"]]])}), 422)


def test_container_token_reads_its_own_records(service, running):
    token = service.client(running["auth"])
    alice = running["alice"]
    other = ok(alice.post("/container_requests", json=request_body(command=["echo", "unrelated"])))

    assert ok(token.get("/containers/current"))["uuid"] == running["uuid"]
    assert ok(token.get(f"/containers/{running['uuid']}"))["state"] == "Running"
    assert ok(token.get(f"/container_requests/{running['request']['uuid']}"))["container_uuid"] == running["uuid"]
    refused(token.get(f"/containers/{other['container_uuid']}"), 404)
    refused(token.get(f"/container_requests/{other['uuid']}"), 404)
    assert [c["uuid"] for c in ok(token.get("/containers"))["items"]] == [running["uuid"]]
    assert [r["uuid"] for r in ok(token.get("/container_requests"))["items"]] == [running["request"]["uuid"]]
    me = ok(token.get("/users/current"))
    assert (me["container_uuid"], me["is_admin"], me["uuid"]) == (running["uuid"], False, user_of(alice))

    refused(alice.get("/containers/current"), 404)


def test_container_token_updates_only_progress_fields_of_its_running_container(service, running):
    token = service.client(running["auth"])
    uuid = running["uuid"]
    patch = {
        "runtime_status": {"activity": "workflow execution", "jobsRunning": 2},
        "progress": 0.5,
        "output": PDH,
        "output_properties": {"answer": 42},
    }
    updated = ok(token.put(f"/containers/{uuid}", json=patch))
    assert {k: updated[k] for k in patch} == patch
    ok(token.patch(f"/containers/{uuid}", json={"runtime_status": {"error": "step failed"}}))
    status = ok(running["admin"].get(f"/containers/{uuid}"))["runtime_status"]
    assert status == {"activity": "workflow execution", "jobsRunning": 2, "error": "step failed"}

    for forbidden in (
        {"state": "Complete", "exit_code": 0},
        {"state": "Cancelled"},
        {"exit_code": 0},
        {"log": PDH},
        {"cost": 1.0},
        {"scheduling_status": "done soon"},
    ):
        refused(token.put(f"/containers/{uuid}", json=forbidden), 422)
    refused(token.post(f"/containers/{uuid}/lock"), 403)
    refused(token.post(f"/containers/{uuid}/unlock"), 403)
    refused(token.post("/dispatchers", json={"name": "rogue"}), 403)

    container = ok(running["admin"].get(f"/containers/{uuid}"))
    assert (container["state"], container["exit_code"], container["log"], container["cost"]) == ("Running", None, None, 0)


def test_container_token_cannot_update_while_locked(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    uuid = ok(alice.post("/container_requests", json=request_body()))["container_uuid"]
    token = service.client(ok(admin.post(f"/containers/{uuid}/lock"))["auth"])
    refused(token.put(f"/containers/{uuid}", json={"progress": 0.1}), 422)
    refused(token.put(f"/containers/{uuid}", json={"state": "Running"}), 422)
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Locked"


def test_container_token_cannot_update_other_containers(service, running):
    token = service.client(running["auth"])
    alice = running["alice"]
    unrelated = ok(alice.post("/container_requests", json=request_body(command=["echo", "unrelated"])))
    child = ok(token.post("/container_requests", json=request_body(command=["echo", "child"])))
    admin = running["admin"]
    ok(admin.post(f"/containers/{child['container_uuid']}/lock"))
    ok(admin.put(f"/containers/{child['container_uuid']}", json={"state": "Running"}))

    refused(token.put(f"/containers/{unrelated['container_uuid']}", json={"progress": 0.5}), 404)
    assert ok(token.get(f"/containers/{child['container_uuid']}"))["state"] == "Running"  # visible…
    refused(token.put(f"/containers/{child['container_uuid']}", json={"progress": 0.5}), 403)  # …not writable
    assert ok(admin.get(f"/containers/{child['container_uuid']}"))["progress"] is None


def test_container_token_creates_child_requests(service, running):
    token = service.client(running["auth"])
    alice = running["alice"]
    child = ok(token.post("/container_requests", json=request_body(command=["echo", "child"])))
    assert child["requesting_container_uuid"] == running["uuid"]
    assert child["owner_uuid"] == user_of(alice)
    assert ok(alice.get(f"/container_requests/{child['uuid']}"))["requesting_container_uuid"] == running["uuid"]
    assert ok(token.get(f"/containers/{child['container_uuid']}"))["state"] == "Queued"
    listed = {r["uuid"] for r in ok(token.get("/container_requests"))["items"]}
    assert listed == {running["request"]["uuid"], child["uuid"]}

    own = ok(alice.post("/container_requests", json=request_body(command=["echo", "top level"])))
    assert own["requesting_container_uuid"] is None
    forged = request_body(command=["echo", "forged"], requesting_container_uuid=running["uuid"])
    refused(alice.post("/container_requests", json=forged), 422)


def test_container_token_changes_only_the_requests_its_container_made(service, running):
    token = service.client(running["auth"])
    parent = running["request"]["uuid"]
    child = ok(token.post("/container_requests", json=request_body(command=["echo", "child"])))

    refused(token.put(f"/container_requests/{parent}", json={"name": "renamed"}), 403)
    refused(token.put(f"/container_requests/{parent}", json={"container_count_max": 10}), 403)
    refused(token.put(f"/container_requests/{parent}", json={"priority": 0}), 403)
    refused(token.delete(f"/container_requests/{parent}"), 403)
    refused(token.post(f"/container_requests/{parent}/release"), 403)
    refused(token.post(f"/container_requests/{parent}/retry"), 403)
    request = ok(running["alice"].get(f"/container_requests/{parent}"))
    assert (request["name"], request["container_count_max"], request["priority"]) == ("test", 3, 500)
    assert ok(running["admin"].get(f"/containers/{running['uuid']}"))["state"] == "Running"

    # Its own children it manages: rename, hold, release, cancel.
    assert ok(token.put(f"/container_requests/{child['uuid']}", json={"name": "step 1"}))["name"] == "step 1"
    assert ok(token.post(f"/container_requests/{child['uuid']}/hold"))["on_hold"] is True
    assert ok(token.post(f"/container_requests/{child['uuid']}/release"))["on_hold"] is False
    assert ok(token.delete(f"/container_requests/{child['uuid']}"))["state"] == "Final"


@pytest.mark.parametrize("ending", ["Complete", "Cancelled", "unlocked"])
def test_container_token_stops_working_when_the_container_finishes(service, ending):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    uuid = ok(alice.post("/container_requests", json=request_body()))["container_uuid"]
    token = service.client(ok(admin.post(f"/containers/{uuid}/lock"))["auth"])
    if ending == "unlocked":
        ok(admin.post(f"/containers/{uuid}/unlock"))
    else:
        ok(admin.put(f"/containers/{uuid}", json={"state": "Running"}))
        assert ok(token.get("/containers/current"))["uuid"] == uuid
        final = {"state": "Complete", "exit_code": 0} if ending == "Complete" else {"state": "Cancelled"}
        ok(admin.put(f"/containers/{uuid}", json=final))
    refused(token.get("/containers/current"), 401)
    refused(token.get(f"/containers/{uuid}"), 401)
    refused(token.post("/container_requests", json=request_body(command=["echo", "late child"])), 401)
    assert ok(admin.get(f"/containers/{uuid}"))["auth"] is None


# -- secrets ----------------------------------------------------------------------------


SECRET = "correct-horse-battery-staple"
RUNTIME_TOKEN = "v2-runtime-token-that-must-stay-hidden"


def _assert_no_secrets(response: httpx.Response) -> None:
    assert SECRET not in response.text, response.request.url
    assert RUNTIME_TOKEN not in response.text, response.request.url

    def walk(value: object) -> None:
        if isinstance(value, dict):
            assert not {"secret_mounts", "runtime_token"} & set(value), response.request.url
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(response.json())


def test_secrets_never_appear_in_responses(service):
    alice = service.client(service.token("alice"))
    admin = service.admin()
    body = request_body(
        secret_mounts={"/etc/secret.txt": {"kind": "text", "content": SECRET}},
        runtime_token=RUNTIME_TOKEN,
    )
    responses = [alice.post("/container_requests", json=body)]
    request = ok(responses[0])
    uuid, container = request["uuid"], request["container_uuid"]
    token = service.client(ok(admin.post(f"/containers/{container}/lock"))["auth"])
    responses += [
        alice.post("/container_requests/explain_reuse", json=body),
        alice.get(f"/container_requests/{uuid}/reuse"),
        alice.put(f"/container_requests/{uuid}", json={"name": "renamed"}),
        alice.get(f"/container_requests/{uuid}/container_status"),
        admin.put(f"/containers/{container}", json={"state": "Running"}),
        token.get("/containers/current"),
        token.put(f"/containers/{container}", json={"progress": 0.5}),
    ]
    for client in (alice, admin, token):
        responses += [
            client.get(f"/container_requests/{uuid}"),
            client.get("/container_requests"),
            client.get(f"/containers/{container}"),
            client.get("/containers"),
            client.get("/events/batch"),
        ]
    responses.append(admin.put(f"/containers/{container}", json={"state": "Complete", "exit_code": 0}))
    responses += [alice.get(f"/container_requests/{uuid}"), admin.get("/events/batch"), admin.get("/collections")]

    for response in responses:
        assert response.status_code == 200, (response.request.url, response.text)
        _assert_no_secrets(response)

    # Nor can they be selected, filtered or ordered on (which would leak them one bit at a time).
    for name in ("secret_mounts", "runtime_token"):
        for params in (
            {"select": json.dumps(["uuid", name])},
            {"filters": json.dumps([[name, "exists", "/etc/secret.txt"]])},
            {"filters": json.dumps([[f"{name}.x", "=", SECRET]])},
            {"order": json.dumps([f"{name} asc"])},
        ):
            response = admin.get("/container_requests", params=params)
            refused(response, 422)
            assert SECRET not in response.text
    refused(admin.get("/containers", params={"select": json.dumps(["secret_mounts"])}), 422)


# -- crunchctl as a real process ----------------------------------------------------------


def _crunchctl(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("crunchctl")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "cwl_crunch.cli.main"]
    return [*prefix, *args]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "crunch-data"


@pytest.fixture
def server_process(data_dir: Path, database_url: str) -> Iterator[ServerProcess]:
    server = ServerProcess(None if database_url.startswith("sqlite") else database_url, data_dir)
    yield server
    server.stop()


def test_crunchctl_server_writes_a_private_working_admin_token(server_process, data_dir, database_url):
    token_file = data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    with server_process.client(token) as admin:
        me = ok(admin.get("/users/current"))
        assert me["is_admin"] is True
        assert ok(admin.post("/dispatchers", json={"name": "d"}))["uuid"]
    with httpx.Client(base_url=server_process.api_url, timeout=5) as anonymous:
        refused(anonymous.get("/users/current"), 401)

    # A restart keeps the same token (it is only written on first start).
    server_process.stop()
    again = ServerProcess(None if database_url.startswith("sqlite") else database_url, data_dir)
    try:
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        with again.client(token) as admin:
            assert ok(admin.get("/users/current"))["uuid"] == me["uuid"]
    finally:
        again.stop()


def test_crunchctl_token_create_prints_a_working_token(server_process, data_dir):
    result = subprocess.run(
        _crunchctl("token", "create", "--data-dir", str(data_dir), "--user", "bob"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token and "\n" not in token

    with server_process.client(token) as bob:
        me = ok(bob.get("/users/current"))
        assert me["is_admin"] is False
        request = ok(bob.post("/container_requests", json=request_body()))
        assert request["owner_uuid"] == me["uuid"]
        refused(bob.post(f"/containers/{request['container_uuid']}/lock"), 403)

    second = subprocess.run(
        _crunchctl("token", "create", "--data-dir", str(data_dir), "--user", "bob"),
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() != token
    with server_process.client(second.stdout.strip()) as bob_again:
        assert ok(bob_again.get("/users/current"))["uuid"] == me["uuid"], "same user, new token"
        assert [r["uuid"] for r in ok(bob_again.get("/container_requests"))["items"]] == [request["uuid"]]
