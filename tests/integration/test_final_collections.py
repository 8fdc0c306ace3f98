"""A container's final update carrying its output and log manifests (SPEC §7 step 7 in one call).

crunch-run used to save two collections and then name them in the final update: three calls.
The update may carry the manifests instead; the server saves them as collections in the same
transaction, so either all three are recorded or none is.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest

from cwl_crunch.domain.collections import portable_data_hash
from tests.support.flows import commit, lock, ok, refused, run
from tests.support.service import RunningService

OUT, LOG = b"result\n", b"2026-11-23T10:00:00.000000000Z hello\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


OUTPUT = {"out.txt": {"blob": sha(OUT), "size": len(OUT)}, "empty/": {}}
LOGS = {"stdout.txt": {"blob": sha(LOG), "size": len(LOG)}}


@pytest.fixture
def service(blob_service: RunningService) -> RunningService:
    return blob_service


@pytest.fixture
def admin(service: RunningService) -> httpx.Client:
    client = service.admin()
    for data in (OUT, LOG):
        ok(client.put(f"/blobs/{sha(data)}", content=data))
    return client


def collections_named(admin: httpx.Client, name: str) -> list[dict]:
    return ok(admin.get("/collections", params={"filters": f'[["name", "=", "{name}"]]'}))["items"]


def test_the_final_update_saves_the_output_and_log_collections_it_names(service, admin):
    alice = service.client(service.token("alice"))
    request = commit(alice)
    uuid = request["container_uuid"]
    run(admin, uuid)
    body = {"state": "Complete", "exit_code": 0, "output_manifest": OUTPUT, "log_manifest": LOGS}
    container = ok(admin.put(f"/containers/{uuid}", json=body))

    assert (container["state"], container["output"], container["log"]) == (
        "Complete", portable_data_hash(OUTPUT), portable_data_hash(LOGS))
    assert "output_manifest" not in container and "log_manifest" not in container
    for name, manifest in ((f"output for {uuid}", OUTPUT), (f"log for {uuid}", LOGS)):
        [saved] = collections_named(admin, name)
        assert saved["manifest"] == manifest
    # The request is finalized from them as from collections saved beforehand.
    final = ok(alice.get(f"/container_requests/{request['uuid']}"))
    assert final["state"] == "Final"
    assert ok(alice.get(f"/collections/{final['output_uuid']}"))["manifest"] == OUTPUT
    # And the Complete event carries the output's manifest, for a runner waiting on it.
    events = ok(admin.get("/events/batch", params={"since": 0}))["items"]
    [completed] = [e for e in events if e["object_uuid"] == uuid and e["properties"].get("new_state") == "Complete"]
    assert completed["properties"]["output_manifest"] == OUTPUT


def test_a_refused_manifest_leaves_the_container_and_the_collections_as_they_were(service, admin):
    uuid = commit(service.client(service.token("alice")))["container_uuid"]
    run(admin, uuid)
    missing = {"out.txt": {"blob": sha(b"missing"), "size": 7}}
    body = {"state": "Complete", "exit_code": 0, "output_manifest": missing, "log_manifest": LOGS}
    messages = refused(admin.put(f"/containers/{uuid}", json=body))
    assert messages == [f"output_manifest['out.txt']: blob {sha(b'missing')} is not in the blob store "
                        f"(PUT it to /blobs/{sha(b'missing')} first)"]
    assert refused(admin.put(f"/containers/{uuid}", json={**body, "output_manifest": {"../x": {}}})) == [
        "output_manifest: invalid path '../x'"]
    container = ok(admin.get(f"/containers/{uuid}"))
    assert (container["state"], container["output"], container["log"]) == ("Running", None, None)
    assert collections_named(admin, f"log for {uuid}") == []  # the valid one was not saved either


def test_a_manifest_must_agree_with_the_hash_given_beside_it(service, admin):
    uuid = commit(service.client(service.token("alice")))["container_uuid"]
    run(admin, uuid)
    other = portable_data_hash(LOGS)
    body = {"state": "Complete", "exit_code": 0, "output": other, "output_manifest": OUTPUT}
    assert refused(admin.put(f"/containers/{uuid}", json=body)) == [
        f"output: {other} is not the hash of output_manifest ({portable_data_hash(OUTPUT)})"]
    same = {**body, "output": portable_data_hash(OUTPUT)}
    assert ok(admin.put(f"/containers/{uuid}", json=same))["output"] == portable_data_hash(OUTPUT)


def test_manifests_follow_the_rules_of_the_attributes_they_set(service, admin):
    uuid = commit(service.client(service.token("alice")))["container_uuid"]
    # Not on a lock: the state change that takes no attributes.
    assert refused(admin.put(f"/containers/{uuid}", json={"state": "Locked", "log_manifest": LOGS})) == [
        "log_manifest, output_manifest: cannot be given when locking or unlocking"]
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Queued"
    lock(admin, uuid)
    token = ok(admin.put(f"/containers/{uuid}", json={"state": "Running"}))["auth"]
    # A container token may set its own output, so also by manifest; not its log.
    own = service.client(token)
    assert ok(own.put(f"/containers/{uuid}", json={"output_manifest": OUTPUT}))["output"] == portable_data_hash(OUTPUT)
    assert refused(own.put(f"/containers/{uuid}", json={"log_manifest": LOGS})) == [
        "log: cannot be changed with a container token"]
    assert collections_named(admin, f"log for {uuid}") == []
    # Nothing but the state after Complete.
    ok(admin.put(f"/containers/{uuid}", json={"state": "Complete", "exit_code": 0}))
    assert refused(admin.put(f"/containers/{uuid}", json={"log_manifest": LOGS})) == [
        "log: cannot be changed while the container is Complete"]
