"""The blob endpoints over real HTTP, on a fresh database of each dialect (SPEC §9)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cwl_crunch.settings import Settings
from cwl_crunch.store import Store
from tests.support.flows import commit, lock, ok, refused
from tests.support.service import RunningService, start_service

DATA = b"0123456789abcdefghij" * 50  # 1000 bytes


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "area" / "blobs"  # nothing else may appear in "area"


@pytest.fixture
def service(store: Store, blob_root: Path) -> Iterator[RunningService]:
    """The usual test service, with a blob store."""
    running = start_service(store, blob_root=blob_root)
    yield running
    running.stop()


@pytest.fixture
def alice(service: RunningService) -> httpx.Client:
    return service.client(service.token("alice"))


def stray_files(root: Path) -> list[str]:
    """Files under the blob root that are not a complete, correct blob at <2 hex>/<hash>."""
    files = [path for path in root.rglob("*") if path.is_file()] if root.exists() else []
    return [
        path.relative_to(root).as_posix()
        for path in files
        if path.parent.name != path.name[:2] or sha(path.read_bytes()) != path.name
    ]


# -- put, head, get --------------------------------------------------------------------------


def test_put_head_get(alice, blob_root):
    url = f"/blobs/{sha(DATA)}"
    assert alice.head(url).status_code == 404
    refused(alice.get(url), 404)
    assert ok(alice.put(url, content=DATA)) == {"hash": sha(DATA), "size": len(DATA)}
    assert (blob_root / sha(DATA)[:2] / sha(DATA)).read_bytes() == DATA

    head = alice.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["accept-ranges"] == "bytes"

    got = alice.get(url)
    assert got.status_code == 200
    assert got.content == DATA
    assert got.headers["content-length"] == str(len(DATA))
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-type"] == "application/octet-stream"


def test_putting_a_stored_blob_again_does_not_rewrite_it(alice, blob_root):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    before = (blob_root / sha(DATA)[:2] / sha(DATA)).stat()
    assert ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA)) == {"hash": sha(DATA), "size": len(DATA)}
    after = (blob_root / sha(DATA)[:2] / sha(DATA)).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_the_empty_blob(alice):
    empty = sha(b"")
    assert ok(alice.put(f"/blobs/{empty}", content=b"")) == {"hash": empty, "size": 0}
    assert alice.head(f"/blobs/{empty}").headers["content-length"] == "0"
    assert alice.get(f"/blobs/{empty}").content == b""
    for header in ("bytes=0-", "bytes=-5"):  # nothing to send a part of
        refused(alice.get(f"/blobs/{empty}", headers={"Range": header}), 416)


def test_a_container_token_may_read_and_write_blobs(service, alice):
    """crunch-run uploads outputs and logs with the container's own token."""
    container = lock(service.admin(), commit(alice)["container_uuid"])
    worker = service.client(container["auth"])
    assert ok(worker.put(f"/blobs/{sha(DATA)}", content=DATA))["size"] == len(DATA)
    assert worker.get(f"/blobs/{sha(DATA)}").content == DATA


# -- ranges ----------------------------------------------------------------------------------

SIZE = len(DATA)
RANGES = [
    ("bytes=0-", 0, SIZE),
    ("bytes=10-", 10, SIZE),
    ("bytes=10-19", 10, 20),
    ("bytes=0-0", 0, 1),
    ("bytes=990-5000", 990, SIZE),  # last beyond the end: clipped
    ("bytes=-10", SIZE - 10, SIZE),  # suffix
    ("bytes=-5000", 0, SIZE),  # suffix longer than the blob: all of it
    (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
]


@pytest.mark.parametrize(("header", "start", "end"), RANGES)
def test_ranges(alice, header, start, end):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    got = alice.get(f"/blobs/{sha(DATA)}", headers={"Range": header})
    assert got.status_code == 206, got.text
    assert got.content == DATA[start:end]
    assert got.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert got.headers["content-length"] == str(end - start)


BEYOND = [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0", "bytes=" + "9" * 40 + "-"]
IGNORED = ["bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=", "bytes=-", "bytes=a-b", "garbage"]


@pytest.mark.parametrize("header", BEYOND)
def test_a_range_beyond_the_end_is_416(alice, header):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    got = alice.get(f"/blobs/{sha(DATA)}", headers={"Range": header})
    assert refused(got, 416) == [f"range not satisfiable: the blob has {SIZE} bytes"]
    assert got.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("header", IGNORED)
def test_a_range_header_it_cannot_honour_is_ignored(alice, header):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    got = alice.get(f"/blobs/{sha(DATA)}", headers={"Range": header})
    assert got.status_code == 200
    assert got.content == DATA


# -- refusals --------------------------------------------------------------------------------


def test_bytes_that_do_not_match_the_hash_are_refused_and_not_kept(alice, blob_root):
    claimed = sha(b"something else")
    messages = refused(alice.put(f"/blobs/{claimed}", content=DATA), 422)
    assert messages == [f"the bytes sent hash to {sha(DATA)}, not {claimed}"]
    assert alice.head(f"/blobs/{claimed}").status_code == 404
    assert alice.head(f"/blobs/{sha(DATA)}").status_code == 404
    assert stray_files(blob_root) == []


BAD_HASHES = ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "%0A", "%2e%2e%2f" + "a" * 55, "..%2F" + "a" * 59]


@pytest.mark.parametrize("bad", BAD_HASHES)
def test_malformed_hashes_are_refused(alice, blob_root, bad):
    for method in ("PUT", "GET", "HEAD"):
        response = alice.request(method, f"/blobs/{bad}", content=DATA if method == "PUT" else None)
        assert response.status_code in (404, 422), (method, response.status_code)
        if method != "HEAD":
            refused(response, response.status_code)
    assert stray_files(blob_root) == []
    area = blob_root.parent
    assert not area.exists() or [p.name for p in area.iterdir()] in ([], ["blobs"])


def test_a_token_is_needed(service, alice):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    other = sha(b"other")
    for client in (service.client(), service.client("not-a-token")):
        refused(client.put(f"/blobs/{other}", content=b"other"), 401)
        refused(client.get(f"/blobs/{sha(DATA)}"), 401)
        assert client.head(f"/blobs/{sha(DATA)}").status_code == 401
    assert alice.head(f"/blobs/{other}").status_code == 404


def test_a_read_only_store_serves_blobs_and_refuses_new_ones(store, blob_root):
    writable = start_service(store, blob_root=blob_root)
    try:
        ok(writable.client(writable.token()).put(f"/blobs/{sha(DATA)}", content=DATA))
    finally:
        writable.stop()
    read_only = start_service(store, Settings(database_url=store.url, blob_root=blob_root, blobs_read_only=True))
    try:
        alice = read_only.client(read_only.token())
        assert alice.get(f"/blobs/{sha(DATA)}").content == DATA
        messages = refused(alice.put(f"/blobs/{sha(b'new')}", content=b"new"), 503)
        assert "read-only" in messages[0]
        refused(alice.put(f"/blobs/{sha(DATA)}", content=DATA), 503)
        assert alice.head(f"/blobs/{sha(b'new')}").status_code == 404
    finally:
        read_only.stop()
    assert stray_files(blob_root) == []


def test_no_blob_root_means_no_blob_endpoints(store):
    running = start_service(store)
    try:
        refused(running.client(running.token()).put(f"/blobs/{sha(DATA)}", content=DATA), 404)
        assert "/arvados/v1/blobs/{sha256}" not in httpx.get(f"{running.url}/openapi.json").json()["paths"]
    finally:
        running.stop()


# -- big blobs stream ------------------------------------------------------------------------

BIG_SIZE = 20 << 20


def test_a_big_blob_streams_both_ways(service, alice, blob_root):
    """20 MB up and down while the process allocates far less than that (the server runs in it)."""
    piece = os.urandom(1 << 16)
    digest = hashlib.sha256()
    for _ in range(BIG_SIZE // len(piece)):
        digest.update(piece)
    big = digest.hexdigest()

    def body() -> Iterator[bytes]:
        for _ in range(BIG_SIZE // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        assert ok(alice.put(f"/blobs/{big}", content=body())) == {"hash": big, "size": BIG_SIZE}
        received = hashlib.sha256()
        size = 0
        with alice.stream("GET", f"/blobs/{big}") as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(BIG_SIZE)
            for chunk in response.iter_bytes():
                received.update(chunk)
                size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (received.hexdigest(), size) == (big, BIG_SIZE)
    assert peak < 8 << 20, f"{peak} bytes allocated at once for a {BIG_SIZE}-byte blob"
    assert (blob_root / big[:2] / big).stat().st_size == BIG_SIZE


def test_an_upload_cut_short_leaves_nothing_behind(service, alice, blob_root):
    """The client promises 1 MB, sends 100 kB and hangs up."""
    host, port = service.url.removeprefix("http://").split(":")
    claimed = sha(b"never complete")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"PUT /arvados/v1/blobs/{claimed} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {service.token()}\r\nContent-Length: {1 << 20}\r\n\r\n".encode()
            + b"x" * 100_000
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (blob_root.exists() and any(p.is_file() for p in blob_root.rglob("*"))):
        time.sleep(0.05)
    assert stray_files(blob_root) == []
    assert alice.head(f"/blobs/{claimed}").status_code == 404
    assert ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))["size"] == len(DATA)  # still serving


def test_a_blob_corrupted_on_disk_is_never_served_as_complete(alice, blob_root):
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))
    path = blob_root / sha(DATA)[:2] / sha(DATA)
    path.chmod(0o644)
    path.write_bytes(DATA[:-1] + b"!")
    with pytest.raises(httpx.HTTPError):
        alice.get(f"/blobs/{sha(DATA)}").read()
    ranged = alice.get(f"/blobs/{sha(DATA)}", headers={"Range": "bytes=0-9"})  # ranges are not checked
    assert ranged.status_code == 206 and ranged.content == DATA[:10]


# -- collections need their blobs --------------------------------------------------------------


def test_a_collection_naming_missing_blobs_is_refused(alice):
    stored = {"blob": sha(DATA), "size": len(DATA)}
    missing = {"blob": sha(b"missing"), "size": 7}
    manifest = {"a.txt": stored, "dir/b.txt": missing, "dir/c.txt": missing, "empty/": {}}
    ok(alice.put(f"/blobs/{sha(DATA)}", content=DATA))

    messages = refused(alice.post("/collections", json={"manifest": manifest}), 422)
    assert len(messages) == 2
    assert "'dir/b.txt'" in messages[0] and "'dir/c.txt'" in messages[1]
    assert all(sha(b"missing") in m and "not in the blob store" in m for m in messages)
    assert ok(alice.get("/collections"))["items_available"] == 0

    wrong_size = refused(alice.post("/collections", json={"manifest": {"a.txt": {**stored, "size": 5}}}), 422)
    assert wrong_size == [f"manifest['a.txt']: size 5 but blob {sha(DATA)} has {len(DATA)} bytes"]

    ok(alice.put(f"/blobs/{sha(b'missing')}", content=b"missing"))
    created = ok(alice.post("/collections", json={"manifest": manifest}))
    assert created["manifest"] == manifest
