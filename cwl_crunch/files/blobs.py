"""Blobs named by the sha256 of their bytes (SPEC §9): one protocol, a directory store, a memory store.

`FileBlobStore` keeps a blob at `<root>/<first 2 hex>/<sha256>`. A write streams into a temp file
in that directory while hashing, and only bytes that hash to the name are flushed to disk and
renamed into place: a blob file is complete and correct, or absent. Writers racing on one blob
each fill their own temp file, and a rename then replaces equal bytes with equal bytes.

Reading a whole blob checks its hash on the way: the last chunk is held back until the bytes are
known to be good, so a reader (an HTTP client, crunch-run) never receives a complete-looking copy
of a blob corrupted on disk. Ranges cannot be checked that way; `verify` rehashes a blob on demand.

Standard library and `cwl_crunch.domain` only: crunch-run imports this.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Protocol

from ..domain.errors import CrunchError, Invalid, NotFound

CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobError(CrunchError):
    """The blob store could not do that."""


class InvalidHash(BlobError, Invalid):
    """Not a blob hash (64 lower-case hex digits)."""

    def __init__(self, value: object) -> None:
        super().__init__(f"{value!r:.80} is not a blob hash (64 lower-case hex digits)")


class InvalidRange(BlobError, Invalid):
    """A byte range must have 0 <= start <= end."""


class BlobNotFound(BlobError, NotFound):
    """No such blob."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"blob {sha256} not found")


class BlobMismatch(BlobError, Invalid):
    """The bytes sent do not hash to the blob's name."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"the bytes sent hash to {actual}, not {expected}")


class BlobCorrupt(BlobError):
    """A stored blob's bytes no longer hash to its name."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"stored blob {expected} is corrupt: its bytes hash to {actual}")


class ReadOnly(BlobError):
    """This blob store is read-only."""


def check_hash(value: object) -> str:
    """`value` if it names a blob, else InvalidHash (so no hash can smuggle in a path)."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidHash(value)
    return value


class BlobStore(Protocol):
    """Content-addressed bytes. Every method refuses a malformed hash with InvalidHash."""

    read_only: bool

    def has(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes, None if absent."""

    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes if they hash to `sha256` (else BlobMismatch, nothing kept); their size."""

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's bytes; their hash and size."""

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes `start` to `end` (exclusive, clipped to the size); BlobNotFound before any chunk."""

    def verify(self, sha256: str) -> int:
        """Rehash a stored blob: its size, or BlobCorrupt."""

    def local_path(self, sha256: str) -> Path | None:
        """The file holding the blob, to hard-link and never write to; None for stores without files."""


class _Common:
    """What both stores do the same way, in terms of their own methods."""

    def put_file(self: BlobStore, path: Path) -> tuple[str, int]:
        """Reads the file once to hash it, and a second time only if the store lacks it."""
        if self.read_only:
            raise ReadOnly()
        sha256, size = _hash_file(path)
        if not self.has(sha256):
            size = self.put(sha256, _file_chunks(path))  # a file changed meanwhile: BlobMismatch
        return sha256, size

    def verify(self: BlobStore, sha256: str) -> int:
        return sum(len(chunk) for chunk in self.open(sha256))


class FileBlobStore(_Common):
    """Blobs as files under `root`, which workers on the same filesystem may read directly."""

    def __init__(self, root: Path, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r}, read_only={self.read_only})"

    def _path(self, sha256: str) -> Path:
        return self.root / check_hash(sha256)[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        path = self._path(sha256)
        if self.read_only:
            raise ReadOnly(f"the blob store {self.root} is read-only")
        if path.is_file():
            return _copy_verified(sha256, chunks, None)  # already stored: check the bytes, rewrite nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{sha256[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                size = _copy_verified(sha256, chunks, file)
                file.flush()
                os.fchmod(file.fileno(), 0o444)  # hard links handed to containers must not write back
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_directory(path.parent)
        return size

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        _check_range(start, end)
        try:
            file = self._path(sha256).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        size = os.fstat(file.fileno()).st_size
        end = size if end is None else min(end, size)
        chunks = _read(file, start, end)
        return _verified(sha256, chunks) if start == 0 and end == size else chunks

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(sha256)
        if not path.is_file():
            raise BlobNotFound(sha256)
        return path


class MemoryBlobStore(_Common):
    """Blobs in a dict, for tests and tools. `blobs` is public: tests corrupt entries on purpose."""

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only
        self.blobs: dict[str, bytes] = {}

    def has(self, sha256: str) -> bool:
        return check_hash(sha256) in self.blobs

    def size(self, sha256: str) -> int | None:
        data = self.blobs.get(check_hash(sha256))
        return None if data is None else len(data)

    def put(self, sha256: str, chunks: Iterable[bytes]) -> int:
        check_hash(sha256)
        if self.read_only:
            raise ReadOnly("the memory blob store is read-only")
        data = b"".join(chunks)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BlobMismatch(sha256, actual)
        self.blobs.setdefault(sha256, data)  # atomic: racing writers keep the first (equal) copy
        return len(data)

    def open(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        _check_range(start, end)
        data = self.blobs.get(check_hash(sha256))
        if data is None:
            raise BlobNotFound(sha256)
        end = len(data) if end is None else min(end, len(data))
        chunks = (data[i : min(i + CHUNK, end)] for i in range(start, end, CHUNK))
        return _verified(sha256, chunks) if start == 0 and end == len(data) else chunks

    def local_path(self, sha256: str) -> Path | None:
        if not self.has(sha256):
            raise BlobNotFound(sha256)
        return None


# -- streaming helpers ---------------------------------------------------------------------


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise InvalidRange(f"invalid byte range {start}-{end}")


def _read(file: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    with file:
        file.seek(start)
        left = end - start
        while left > 0:
            chunk = file.read(min(CHUNK, left))
            if not chunk:
                return  # the file shrank under us; a whole read reports it as corrupt
            left -= len(chunk)
            yield chunk


def _verified(sha256: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks`, the last one only once they all hash to `sha256` (else BlobCorrupt instead)."""
    digest = hashlib.sha256()
    held = None
    for chunk in chunks:
        if held is not None:
            yield held
        digest.update(chunk)
        held = chunk
    actual = digest.hexdigest()
    if actual != sha256:
        raise BlobCorrupt(sha256, actual)
    if held is not None:
        yield held


def _copy_verified(sha256: str, chunks: Iterable[bytes], file: BinaryIO | None) -> int:
    """Hash `chunks` while writing them to `file` (if any): their size, or BlobMismatch."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        if file is not None:
            file.write(chunk)
        size += len(chunk)
    if digest.hexdigest() != sha256:
        raise BlobMismatch(sha256, digest.hexdigest())
    return size


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk


def _hash_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256")
        return digest.hexdigest(), file.tell()


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; some filesystems cannot fsync a directory, which is fine."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
