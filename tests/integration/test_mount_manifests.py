"""A collection mount carrying its manifest: the service saves the collection with the request.

A client staging a step's files creates its request in one call instead of two (a collection,
then the request naming it). The request is stored exactly as after a separate save, so reuse
cannot tell the two apart.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest

from cwl_crunch.domain.collections import portable_data_hash
from tests.support.flows import ok, refused
from tests.support.service import RunningService

DATA = b"ACGT\n"
BLOB = hashlib.sha256(DATA).hexdigest()
STAGED = {"0/reads.fa": {"blob": BLOB, "size": len(DATA)}}
PDH = portable_data_hash(STAGED)


@pytest.fixture
def service(blob_service: RunningService) -> RunningService:
    return blob_service


@pytest.fixture
def alice(service: RunningService) -> httpx.Client:
    client = service.client(service.token("alice"))
    ok(client.put(f"/blobs/{BLOB}", content=DATA))
    return client


def request(mount: dict, **extra) -> dict:
    return {"state": "Committed", "priority": 1, "command": ["cat", "/keep/in/0/reads.fa"], "cwd": "/var/spool/cwl",
            "output_path": "/var/spool/cwl", "container_image": "",
            "mounts": {"/var/spool/cwl": {"kind": "tmp"}, "/keep/in": mount}, **extra}


def collections_named(client: httpx.Client, prefix: str) -> list[dict]:
    return [c for c in ok(client.get("/collections", params={"limit": "1000"}))["items"] if c["name"].startswith(prefix)]


def test_a_mounts_manifest_is_saved_with_the_request_which_keeps_only_its_hash(service, alice):
    assert ok(alice.get("/config"))["mount_manifests"] is True
    created = ok(alice.post("/container_requests", json=request({"kind": "collection", "manifest": STAGED})))

    assert created["mounts"]["/keep/in"] == {"kind": "collection", "portable_data_hash": PDH}
    [saved] = collections_named(alice, "mounted at /keep/in by ")
    assert (saved["name"], saved["manifest"], saved["portable_data_hash"]) == (
        f"mounted at /keep/in by {created['uuid']}", STAGED, PDH)
    container = ok(service.admin().get(f"/containers/{created['container_uuid']}"))
    assert container["mounts"]["/keep/in"] == {"kind": "collection", "portable_data_hash": PDH}
    # The same work asked for with the hash alone (the collection saved separately) is the same container.
    again = ok(alice.post("/container_requests", json=request({"kind": "collection", "portable_data_hash": PDH})))
    assert again["container_uuid"] == created["container_uuid"]


def test_an_uncommitted_requests_mounts_may_be_given_manifests_too(service, alice):
    draft = ok(alice.post("/container_requests", json=request({"kind": "tmp"}, state="Uncommitted")))
    mounts = {**draft["mounts"], "/keep/in": {"kind": "collection", "manifest": STAGED, "portable_data_hash": PDH}}
    updated = ok(alice.put(f"/container_requests/{draft['uuid']}", json={"mounts": mounts}))
    assert updated["mounts"]["/keep/in"] == {"kind": "collection", "portable_data_hash": PDH}
    assert [c["manifest"] for c in collections_named(alice, "mounted at /keep/in by ")] == [STAGED]


def test_a_refused_manifest_creates_neither_the_request_nor_a_collection(service, alice):
    missing = hashlib.sha256(b"missing").hexdigest()
    bad = {"0/reads.fa": {"blob": missing, "size": 7}}
    assert refused(alice.post("/container_requests", json=request({"kind": "collection", "manifest": bad}))) == [
        f"mounts['/keep/in'].manifest['0/reads.fa']: blob {missing} is not in the blob store "
        f"(PUT it to /blobs/{missing} first)"]
    assert refused(alice.post("/container_requests", json=request({"kind": "text", "content": "x", "manifest": STAGED}))) == [
        "mounts['/keep/in'].manifest: only a collection mount takes a manifest"]
    other = portable_data_hash({})
    assert refused(alice.post("/container_requests", json=request(
        {"kind": "collection", "manifest": STAGED, "portable_data_hash": other}))) == [
        f"mounts['/keep/in'].portable_data_hash: {other} is not the hash of its manifest ({PDH})"]
    assert ok(alice.get("/container_requests"))["items_available"] == 0
    assert collections_named(alice, "") == []
