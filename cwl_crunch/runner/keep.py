"""Collections for crunch-run: materialise inputs once per worker, capture outputs and logs.

Blobs are read from and written to the blob root directly when this worker shares the API
server's filesystem (`CRUNCH_BLOB_ROOT`): inputs are then hard links, never copies. Otherwise
they travel over the API, and only blobs the server lacks are uploaded.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import ApiError, Client
from ..domain.collections import portable_data_hash
from ..files.blobs import FileBlobStore

CHUNK = 1 << 20
CACHE_KEEP_SECONDS = 24 * 3600  # a materialised collection unused this long leaves the worker
PRUNE_EVERY_SECONDS = 3600  # how often one crunch-run on a worker looks for such collections


class Keep:
    def __init__(self, api: Client, blob_root: Path | None, cache_dir: Path) -> None:
        self.api = api
        self.local = FileBlobStore(blob_root) if blob_root is not None and blob_root.is_dir() else None
        self.cache_dir = cache_dir
        self._asked: tuple[str, Callable[[], Any]] | None = None  # a manifest asked for (`prefetch`), unread
        self._manifests: dict[str, dict[str, Any]] = {}  # manifests read, not used yet
        self._held: list[int] = []  # lock descriptors of the collections materialised for this container

    def prefetch(self, pdh: str) -> None:
        """Ask for a collection's manifest now, unless it is materialised already; `materialise`
        reads the answer. The server works while this process sets up other things. Until it is
        read (`settle`), this thread must make no other API call: the request holds its connection."""
        if self._asked is None and pdh not in self._manifests and not (self.cache_dir / pdh).is_dir():
            self._asked = (pdh, self.api.begin("GET", f"/collections/{pdh}"))

    def settle(self) -> None:
        """Read the answer to `prefetch`, if one is pending. A failure is forgotten: `materialise`
        asks again, and reports it as it would have."""
        if self._asked is None:
            return
        (pdh, answer), self._asked = self._asked, None
        try:
            self._manifests[pdh] = answer()["manifest"]
        except (ApiError, OSError, KeyError, TypeError):
            pass

    def _manifest(self, pdh: str) -> dict[str, Any]:
        self.settle()
        manifest = self._manifests.pop(pdh, None)
        return manifest if manifest is not None else self.api.get("collections", pdh)["manifest"]

    # -- inputs --------------------------------------------------------------------------

    def materialise(self, pdh: str) -> Path:
        """A read-only directory with the collection's files, built once per worker and shared.
        It is kept from being pruned (see `prune`) until `release`."""
        final = self.cache_dir / pdh
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._held.append(_hold(self.cache_dir / f"{pdh}.lock"))
        if final.is_dir():
            os.utime(final)  # last used now
            return final
        manifest = self._manifest(pdh)
        building = Path(tempfile.mkdtemp(prefix=f".{pdh[:16]}-", dir=self.cache_dir))
        try:
            for path, entry in sorted(manifest.items()):
                target = building / path
                if path.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                self._fetch(entry["blob"], target)
            os.rename(building, final)  # atomic: another crunch-run may have won; then use theirs
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            if not final.is_dir():
                raise
        return final

    def release(self) -> None:
        """The container is over: the collections it used may be pruned again."""
        held, self._held = self._held, []
        for fd in held:
            os.close(fd)

    def prune(self, keep_seconds: float = CACHE_KEEP_SECONDS, every: float = PRUNE_EVERY_SECONDS) -> list[str]:
        """Remove the materialised collections nobody has used for `keep_seconds` (copies, when
        blobs are not on this worker's filesystem, would otherwise fill its disk), and what killed
        crunch-runs left half built; at most once per `every` seconds per worker. One in use by a
        live crunch-run (it holds `<pdh>.lock` shared) stays. Returns the collections removed;
        housekeeping, so a cache it cannot read or change is simply left as it is."""
        marker, now = self.cache_dir / ".pruned", time.time()
        try:
            if now - marker.stat().st_mtime < every:
                return []
        except FileNotFoundError:
            pass  # never pruned
        try:
            marker.touch()
            entries = list(self.cache_dir.iterdir())
        except OSError:
            return []
        removed = []
        for entry in entries:
            if now - _mtime(entry) < keep_seconds or entry.name == marker.name:
                continue
            if entry.suffix == ".lock":  # of a collection that was never built: removed like one
                if not entry.with_suffix("").exists():
                    _remove_unused(entry.with_suffix(""), entry, now - keep_seconds)
            elif entry.name.startswith("."):  # half built, or half removed, by a crunch-run that died
                shutil.rmtree(entry, ignore_errors=True)
            elif _remove_unused(entry, self.cache_dir / f"{entry.name}.lock", now - keep_seconds):
                removed.append(entry.name)
        return removed

    def image_tarball(self, pdh: str) -> Path:
        """The one `*.tar` of an image collection (SPEC §7 step 3), materialised like any input."""
        tarballs = sorted(p for p in self.materialise(pdh).rglob("*.tar") if p.is_file())
        if len(tarballs) != 1:
            raise ValueError(f"an image collection holds exactly one image tarball (*.tar), not {len(tarballs)}")
        return tarballs[0]

    def _fetch(self, sha256: str, target: Path) -> None:
        source = self.local.local_path(sha256) if self.local is not None else None
        if source is not None and source.exists():
            try:
                os.link(source, target)
                return
            except OSError:  # another filesystem: copy
                shutil.copyfile(source, target)
                return
        target.write_bytes(self.api.get_blob(sha256))

    # -- outputs and logs ----------------------------------------------------------------

    def capture(self, directory: Path, globs: list[str] | None = None,
                sha1: dict[str, str] | None = None) -> dict[str, Any]:
        """Upload the files under `directory` (those matching `globs`, if any); their manifest.
        With `sha1`, each file's SHA-1 is put there too (hex, by path), from the same read."""
        manifest: dict[str, Any] = {}
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            relative_root = Path(root).relative_to(directory)
            for name in sorted(files):
                path = Path(root) / name
                relative = str(relative_root / name) if str(relative_root) != "." else name
                if globs and not _matches(relative, globs):
                    continue
                if not path.is_file() or not _inside(path, directory):
                    continue  # sockets, fifos, dangling links, links out of the output directory
                manifest[relative] = self.store_file(path, sha1, relative)
            if not files and not dirs and str(relative_root) != "." and not globs:
                manifest[str(relative_root) + "/"] = {}
        return manifest

    def store_files(self, files: dict[str, bytes | Path]) -> dict[str, Any]:
        """Upload files given by content or by path; their manifest."""
        return {name: self.store_file(data) if isinstance(data, Path) else self.store_bytes(data)
                for name, data in sorted(files.items())}

    def store_bytes(self, data: bytes) -> dict[str, Any]:
        sha256 = hashlib.sha256(data).hexdigest()
        return {"blob": sha256, "size": self._store(sha256, len(data), data)}

    def store_file(self, path: Path, sha1: dict[str, str] | None = None, name: str = "") -> dict[str, Any]:
        """Store one file's content (read once to hash it, again only if the store lacks it)."""
        sha256, size, digest = _hash(path, with_sha1=sha1 is not None)
        if sha1 is not None:
            sha1[name] = digest
        return {"blob": sha256, "size": self._store(sha256, size, path)}

    def _store(self, sha256: str, size: int, content: bytes | Path) -> int:
        """Put `content` in the blob store unless it is there already; its size as stored (a
        file changed since it was hashed: BlobMismatch)."""
        if self.local is not None:
            if not self.local.has(sha256):
                return self.local.put(sha256, _chunks(content) if isinstance(content, Path) else [content])
        elif not self.api.has_blob(sha256):
            self.api.put_blob(sha256, content)
        return size

    def save(self, manifest: dict[str, Any], name: str) -> str:
        """Record a collection; its portable data hash."""
        record = self.api.create("collections", {"name": name, "manifest": manifest})
        pdh = record["portable_data_hash"]
        if pdh != portable_data_hash(manifest):
            raise RuntimeError(f"the server computed {pdh} for a manifest hashing to {portable_data_hash(manifest)}")
        return pdh


def store_file_over_api(api: Client, path: Path) -> dict[str, Any]:
    """Upload a file as one blob unless the server has it already; its manifest entry."""
    sha256, size, _ = _hash(path, with_sha1=False)
    if not api.has_blob(sha256):
        api.put_blob(sha256, path)
    return {"blob": sha256, "size": size}


def _hash(path: Path, with_sha1: bool) -> tuple[str, int, str]:
    """(sha256, size, sha1 or "") of a file, read once."""
    digest, sha1, size = hashlib.sha256(), hashlib.sha1() if with_sha1 else None, 0  # noqa: S324 - CWL's checksum
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size, sha1.hexdigest() if sha1 is not None else ""


def _chunks(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _inside(path: Path, directory: Path) -> bool:
    """A symbolic link is captured only when it points inside the output directory."""
    if not path.is_symlink():
        return True
    return path.resolve().is_relative_to(directory.resolve())


def _matches(relative: str, globs: list[str]) -> bool:
    """output_glob: a pattern matches a file or a directory holding it."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for pattern in globs for prefix in prefixes)


def _hold(lock_path: Path) -> int:
    """Lock `lock_path` shared; the descriptor holding it (closing it, or this process ending,
    lets go). A lock file the pruner removed meanwhile is locked anew: a lock must be on the
    file the path names."""
    while True:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_unused(entry: Path, lock_path: Path, cutoff: float) -> bool:
    """Remove `entry` (if it is there) and its lock file, unless a crunch-run holds the lock or
    `entry` was used after `cutoff`; whether `entry` was removed."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # in use
    doomed = None
    try:
        if entry.exists():
            if _mtime(entry) > cutoff:
                return False  # used while we looked
            doomed = entry.with_name(f".pruned-{entry.name}-{os.getpid()}")
            os.rename(entry, doomed)
        os.unlink(lock_path)  # while locked: see _hold
    except OSError:
        return False
    finally:
        os.close(fd)
    if doomed is not None:
        shutil.rmtree(doomed, ignore_errors=True)
    return doomed is not None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone: nothing to do

