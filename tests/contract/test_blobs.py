"""The blob store's contract, one suite run against every implementation (files and memory)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cwl_crunch.files import (
    BlobCorrupt,
    BlobMismatch,
    BlobNotFound,
    BlobStore,
    FileBlobStore,
    InvalidHash,
    MemoryBlobStore,
    ReadOnly,
)
from cwl_crunch.files.blobs import CHUNK, InvalidRange

DATA = b"hello blob store\n" * 1000
BIG = os.urandom(2 * CHUNK + 12345)  # spans several read chunks


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Backend:
    """One implementation, with what the suite needs to reach behind its interface."""

    store: BlobStore
    read_only_twin: Callable[[], BlobStore]  # a read-only store over the same blobs
    corrupt: Callable[[str], None]  # change a stored blob's bytes behind the store's back
    leftovers: Callable[[], list[str]]  # anything stored that is not a good, complete blob


def _file_backend(root: Path) -> Backend:
    def corrupt(sha256: str) -> None:
        path = root / sha256[:2] / sha256
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def leftovers() -> list[str]:
        strays = []
        for path in root.rglob("*"):
            relative = path.relative_to(root).as_posix()
            if path.is_dir() and len(path.name) == 2 and path.parent == root:
                continue
            good = path.is_file() and relative == f"{path.name[:2]}/{path.name}" and sha(path.read_bytes()) == path.name
            if not good:
                strays.append(relative)
        return strays

    return Backend(FileBlobStore(root), lambda: FileBlobStore(root, read_only=True), corrupt, leftovers)


def _memory_backend() -> Backend:
    store = MemoryBlobStore()

    def twin() -> MemoryBlobStore:
        read_only = MemoryBlobStore(read_only=True)
        read_only.blobs = store.blobs
        return read_only

    def corrupt(sha256: str) -> None:
        data = bytearray(store.blobs[sha256])
        data[len(data) // 2] ^= 0xFF
        store.blobs[sha256] = bytes(data)

    def leftovers() -> list[str]:
        return [key for key, data in store.blobs.items() if sha(data) != key]

    return Backend(store, twin, corrupt, leftovers)


@pytest.fixture(params=["file", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _file_backend(tmp_path / "blobs") if request.param == "file" else _memory_backend()


@pytest.fixture
def blobs(backend: Backend) -> BlobStore:
    return backend.store


def read(store: BlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open(sha256, start, end))


# -- writing -------------------------------------------------------------------------------


def test_round_trip(blobs, backend):
    assert not blobs.has(sha(DATA))
    assert blobs.size(sha(DATA)) is None
    assert blobs.put(sha(DATA), pieces(DATA)) == len(DATA)
    assert blobs.has(sha(DATA))
    assert blobs.size(sha(DATA)) == len(DATA)
    assert read(blobs, sha(DATA)) == DATA
    assert blobs.verify(sha(DATA)) == len(DATA)
    assert backend.leftovers() == []


def test_the_empty_blob(blobs):
    empty = sha(b"")
    assert blobs.put(empty, []) == 0
    assert blobs.has(empty) and blobs.size(empty) == 0
    assert read(blobs, empty) == b""
    assert blobs.verify(empty) == 0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_chunks_may_be_any_bytes_like_object(blobs, kind):
    assert blobs.put(sha(DATA), (kind(chunk) for chunk in pieces(DATA))) == len(DATA)
    assert read(blobs, sha(DATA)) == DATA


def test_putting_a_stored_blob_again_changes_nothing(blobs, backend):
    blobs.put(sha(DATA), [DATA])
    path = blobs.local_path(sha(DATA))
    before = path.stat() if path else None
    assert blobs.put(sha(DATA), pieces(DATA, 7)) == len(DATA)
    assert read(blobs, sha(DATA)) == DATA
    if path is not None:  # not rewritten: same file, untouched
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert backend.leftovers() == []


def test_bytes_that_do_not_match_the_hash_are_refused_and_nothing_is_kept(blobs, backend):
    wrong = DATA + b"!"
    with pytest.raises(BlobMismatch) as refused:
        blobs.put(sha(DATA), pieces(wrong))
    assert (refused.value.expected, refused.value.actual) == (sha(DATA), sha(wrong))
    assert sha(DATA) in str(refused.value) and sha(wrong) in str(refused.value)
    assert not blobs.has(sha(DATA)) and not blobs.has(sha(wrong))
    assert backend.leftovers() == []


def test_wrong_bytes_for_a_stored_blob_are_refused_and_the_blob_is_intact(blobs, backend):
    blobs.put(sha(DATA), [DATA])
    with pytest.raises(BlobMismatch):
        blobs.put(sha(DATA), [b"something else"])
    assert read(blobs, sha(DATA)) == DATA
    assert backend.leftovers() == []


class Interrupted(Exception):
    pass


def test_an_upload_interrupted_midway_leaves_nothing_behind(blobs, backend):
    def interrupted() -> Iterator[bytes]:
        yield DATA[:100]
        raise Interrupted  # like a client that disconnects

    with pytest.raises(Interrupted):
        blobs.put(sha(DATA), interrupted())
    assert not blobs.has(sha(DATA))
    assert backend.leftovers() == []


def test_concurrent_puts_of_one_blob_end_with_one_good_copy(blobs, backend):
    writers = 8
    barrier = threading.Barrier(writers)
    results: list[object] = []

    def slowly() -> Iterator[bytes]:
        for chunk in pieces(BIG, 256 * 1024):
            time.sleep(0.001)  # let the writers interleave
            yield chunk

    def write() -> None:
        barrier.wait(10)
        try:
            results.append(blobs.put(sha(BIG), slowly()))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [len(BIG)] * writers
    assert blobs.verify(sha(BIG)) == len(BIG)
    assert read(blobs, sha(BIG)) == BIG
    assert backend.leftovers() == []


def test_put_file(blobs, backend, tmp_path):
    source = tmp_path / "input.dat"
    source.write_bytes(BIG)
    assert blobs.put_file(source) == (sha(BIG), len(BIG))
    assert read(blobs, sha(BIG)) == BIG
    path = blobs.local_path(sha(BIG))
    inode = path.stat().st_ino if path else None
    assert blobs.put_file(source) == (sha(BIG), len(BIG))  # already there: not copied again
    if path is not None:
        assert path.stat().st_ino == inode
    assert backend.leftovers() == []


def test_a_read_only_store_refuses_writes_but_reads(blobs, backend, tmp_path):
    blobs.put(sha(DATA), [DATA])
    read_only = backend.read_only_twin()
    assert read_only.read_only
    source = tmp_path / "new.dat"
    source.write_bytes(BIG)
    with pytest.raises(ReadOnly):
        read_only.put(sha(BIG), [BIG])
    with pytest.raises(ReadOnly):
        read_only.put_file(source)
    with pytest.raises(ReadOnly):
        read_only.put(sha(DATA), [DATA])  # even a blob it has: read-only means no writes at all
    assert not read_only.has(sha(BIG)) and not blobs.has(sha(BIG))
    assert read(read_only, sha(DATA)) == DATA
    assert backend.leftovers() == []


# -- reading -------------------------------------------------------------------------------

RANGES = [
    (0, None),
    (0, 1),
    (10, 20),
    (CHUNK - 5, CHUNK + 5),  # across a read chunk
    (len(BIG) - 1, None),
    (5, len(BIG) + 1000),  # end beyond the size: clipped
    (len(BIG), None),  # at the end: nothing
    (len(BIG) + 10, len(BIG) + 20),  # beyond the end: nothing
    (7, 7),  # empty
]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_ranges(blobs, start, end):
    blobs.put(sha(BIG), pieces(BIG, CHUNK // 3))
    assert read(blobs, sha(BIG), start, end) == BIG[start:end]


@pytest.mark.parametrize(("start", "end"), [(-1, None), (10, 9)])
def test_invalid_ranges_are_refused(blobs, start, end):
    blobs.put(sha(DATA), [DATA])
    with pytest.raises(InvalidRange):
        blobs.open(sha(DATA), start, end)


def test_a_missing_blob(blobs):
    missing = sha(b"never stored")
    assert not blobs.has(missing)
    assert blobs.size(missing) is None
    with pytest.raises(BlobNotFound) as not_found:
        blobs.open(missing)  # at once, not on the first chunk
    assert missing in str(not_found.value)
    with pytest.raises(BlobNotFound):
        blobs.verify(missing)
    with pytest.raises(BlobNotFound):
        blobs.local_path(missing)


def test_local_path(blobs):
    blobs.put(sha(DATA), [DATA])
    path = blobs.local_path(sha(DATA))
    if isinstance(blobs, MemoryBlobStore):
        assert path is None
    else:
        assert path.read_bytes() == DATA


def test_a_corrupted_blob_is_detected(blobs, backend):
    blobs.put(sha(BIG), [BIG])
    backend.corrupt(sha(BIG))
    with pytest.raises(BlobCorrupt) as corrupt:
        blobs.verify(sha(BIG))
    assert corrupt.value.expected == sha(BIG) and corrupt.value.actual != sha(BIG)
    received: list[bytes] = []
    with pytest.raises(BlobCorrupt):
        received.extend(blobs.open(sha(BIG)))
    # The last chunk was held back: a reader never gets a complete-looking bad copy.
    assert 0 < sum(map(len, received)) < len(BIG)


# -- hashes are names, never paths ---------------------------------------------------------

BAD_HASHES = [
    "", "a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 64 + "\n", "\n" + "a" * 63, " " + "a" * 63,
    "../" + "a" * 61, "aa/" + "a" * 61, "/" + "a" * 63, "a" * 62 + "/.", "\0" * 64, "é" * 64,
    None, 1234, b"a" * 64,
]


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
def test_malformed_hashes_are_refused_by_every_operation(blobs, backend, bad, tmp_path):
    operations: list[Callable[[], object]] = [
        lambda: blobs.has(bad),
        lambda: blobs.size(bad),
        lambda: blobs.put(bad, [DATA]),
        lambda: blobs.open(bad),
        lambda: blobs.verify(bad),
        lambda: blobs.local_path(bad),
    ]
    for operation in operations:
        with pytest.raises(InvalidHash):
            operation()
    assert backend.leftovers() == []
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "blobs"])  # nothing written beside the root


# -- the directory layout ------------------------------------------------------------------


def test_files_live_at_root_first_two_hex_hash_read_only(tmp_path):
    store = FileBlobStore(tmp_path / "root")
    store.put(sha(DATA), [DATA])
    path = tmp_path / "root" / sha(DATA)[:2] / sha(DATA)
    assert store.local_path(sha(DATA)) == path
    assert path.read_bytes() == DATA
    assert path.stat().st_mode & 0o777 == 0o444
    assert [p.name for p in path.parent.iterdir()] == [sha(DATA)]


def test_a_read_only_file_store_creates_nothing(tmp_path):
    store = FileBlobStore(tmp_path / "absent", read_only=True)
    assert not store.has(sha(DATA))
    with pytest.raises(ReadOnly):
        store.put(sha(DATA), [DATA])
    assert not (tmp_path / "absent").exists()


def test_the_package_stays_lean_for_crunch_run():
    """crunch-run imports cwl_crunch.files: no web framework, ORM or HTTP client may come with it."""
    heavy = ("fastapi", "starlette", "sqlalchemy", "alembic", "pydantic", "httpx", "uvicorn", "psycopg")
    layers = ("cwl_crunch.store", "cwl_crunch.services", "cwl_crunch.server", "cwl_crunch.cli")
    script = (
        "import sys, cwl_crunch.files, cwl_crunch.files.blobs\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith({layers!r})))"
    )
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
