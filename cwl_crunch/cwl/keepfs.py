"""Files in collections as cwltool sees them: `keep:<pdh>/<path>` locations.

Output collections are read where they are — manifests are fetched once per portable data hash
(they never change), file contents only when cwltool opens a file — and local input files are
uploaded once by content.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import posixpath
import re
import threading
import urllib.parse
from pathlib import Path
from typing import IO, Any

from cwltool.stdfsaccess import StdFsAccess
from schema_salad.ref_resolver import uri_file_path

from ..client import ApiError, Client
from ..domain.collections import portable_data_hash
from ..files.blobs import FileBlobStore
from ..runner.keep import store_file_over_api

SCHEME = "keep:"
_SHA1 = re.compile(r"[0-9a-f]{40}")


def parse(location: str) -> tuple[str, str]:
    """`keep:<pdh>/a%20b/c` → (pdh, "a b/c")."""
    rest = location[len(SCHEME):]
    pdh, _, path = rest.partition("/")
    return pdh, posixpath.normpath(urllib.parse.unquote(path)).lstrip("/").removeprefix(".")


def location(pdh: str, path: str = "") -> str:
    return f"{SCHEME}{pdh}/{urllib.parse.quote(path)}" if path else f"{SCHEME}{pdh}"


class Manifest:
    """One collection's files, with the directories they imply."""

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = {p: e for p, e in files.items() if not p.endswith("/")}
        self.dirs = {""}
        for path in files:
            parts = path.rstrip("/").split("/")
            upto = len(parts) if path.endswith("/") else len(parts) - 1
            self.dirs.update("/".join(parts[:i]) for i in range(1, upto + 1))
        # Directories holding something; the others are empty and kept as `dir/` entries.
        self._occupied = {posixpath.dirname(path) for path in (*self.files, *self.dirs) if path}

    def under(self, directory: str) -> dict[str, Any]:
        """Entries below `directory`, relative to it (empty directories kept as `dir/`)."""
        prefix = directory + "/" if directory else ""
        found: dict[str, Any] = {p[len(prefix):]: e for p, e in self.files.items() if p.startswith(prefix)}
        for d in self.dirs - self._occupied:
            if d.startswith(prefix) and d != directory:
                found[d[len(prefix):] + "/"] = {}
        return found

    def children(self, directory: str) -> set[str]:
        prefix = directory + "/" if directory else ""
        names = {p[len(prefix):].split("/", 1)[0] for p in (*self.files, *self.dirs) if p.startswith(prefix) and p != directory}
        names.discard("")
        return names


class Keep:
    """Collections and blobs for the runner: manifests cached, local files uploaded once."""

    def __init__(self, api: Client, blob_root: Path | None = None, mount_manifests: bool = False) -> None:
        self.api = api
        # The service saves a collection mount's `manifest` with the request (its /config says so):
        # a step's staging collection then travels in its request instead of a call of its own.
        self.mount_manifests = mount_manifests
        self.local = FileBlobStore(blob_root, read_only=True) if blob_root is not None and blob_root.is_dir() else None
        self._manifests: dict[str, Manifest] = {}
        self._sha1: dict[str, dict[str, str]] = {}  # pdh → path → SHA-1, as crunch-run recorded them
        # In-place updates (InplaceUpdateRequirement): a location whose content a step changed →
        # where the changed content is now (in that step's output collection).
        self._updated: dict[str, str] = {}
        self._uploaded: dict[tuple[str, int, int, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def manifest(self, pdh: str) -> Manifest:
        found = self._manifests.get(pdh)
        if found is None:
            try:
                record = self.api.get("collections", pdh)
            except ApiError as error:
                raise FileNotFoundError(f"collection {pdh}: {error}") from error
            found = self._manifests[pdh] = Manifest(record["manifest"])
            if pdh not in self._sha1:  # a request's output collection carries its container's digests
                self.remember_sha1(pdh, (record.get("properties") or {}).get("sha1"))
        return found

    def remember(self, pdh: str, files: dict[str, Any]) -> None:
        """A collection's manifest learnt elsewhere (a container's Complete event): read without
        asking. Ignored unless it hashes to `pdh`."""
        if pdh not in self._manifests and portable_data_hash(files) == pdh:
            self._manifests[pdh] = Manifest(files)

    def updated_in_place(self, old: str, new: str) -> None:
        """Files and directories at `old` (and below it) now read as those at `new`."""
        if old != new:
            self._updated[old.rstrip("/")] = new.rstrip("/")

    def current(self, where: str) -> str:
        """The location holding what `where` holds now, after any in-place updates."""
        for _ in range(len(self._updated)):  # each update at most once: no cycle can loop
            for old, new in self._updated.items():
                if where == old or where.startswith(old + "/"):
                    where = new + where[len(old):]
                    break
            else:
                break
        return where

    def remember_sha1(self, pdh: str, digests: Any) -> None:
        """The SHA-1 of a collection's files, from its container's `output_properties["sha1"]` or
        the `properties["sha1"]` of a collection with that content."""
        if isinstance(digests, dict) and digests:
            self._sha1[pdh] = {p: d for p, d in digests.items() if isinstance(d, str) and _SHA1.fullmatch(d)}

    def sha1(self, location: str) -> str | None:
        """A file's SHA-1 without reading it, when its collection came with digests."""
        if not location.startswith(SCHEME):
            return None
        pdh, path = parse(location)
        return self._sha1.get(pdh, {}).get(path)

    def save(self, files: dict[str, Any], name: str) -> str:
        """Record a collection (if it is not known already); its portable data hash."""
        pdh = portable_data_hash(files)
        if pdh not in self._manifests:
            self.api.create("collections", {"name": name, "manifest": files})
            self._manifests[pdh] = Manifest(files)
        return pdh

    def stage(self, files: dict[str, Any], name: str) -> tuple[str, dict[str, Any] | None]:
        """A collection for a request to mount: its portable data hash, and the manifest to send
        in the mount when the service will save it with the request (else it is saved now, unless
        known already). Known once the request is created (`remember`)."""
        pdh = portable_data_hash(files)
        if self.mount_manifests and pdh not in self._manifests:
            return pdh, files
        return self.save(files, name), None

    def read(self, entry: dict[str, Any]) -> bytes:
        if self.local is not None:
            path = self.local.local_path(entry["blob"])
            if path is not None and path.exists():
                return path.read_bytes()
        return self.api.get_blob(entry["blob"])

    def copy_to(self, entry: dict[str, Any], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read(entry))

    def store_bytes(self, data: bytes) -> dict[str, Any]:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.api.has_blob(sha256):
            self.api.put_blob(sha256, data)
        return {"blob": sha256, "size": len(data)}

    def store_file(self, path: str) -> dict[str, Any]:
        """Upload a local file unless the service has its content already (once per runner)."""
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            known = self._uploaded.get(key)
        if known is not None:
            return known
        entry = store_file_over_api(self.api, Path(path))
        with self._lock:
            self._uploaded[key] = entry
        return entry

    def store_tree(self, directory: str) -> dict[str, Any]:
        """A local directory's files as manifest entries relative to it."""
        files: dict[str, Any] = {}
        for root, dirs, names in os.walk(directory, followlinks=True):
            relative = os.path.relpath(root, directory)
            prefix = "" if relative == "." else relative + "/"
            for name in names:
                files[prefix + name] = self.store_file(os.path.join(root, name))
            if not dirs and not names and prefix:
                files[prefix] = {}
        return files


class CollectionFsAccess(StdFsAccess):
    """cwltool's file access, extended to `keep:` locations."""

    def __init__(self, basedir: str, keep: Keep) -> None:
        super().__init__(basedir)
        self.keep = keep

    def _lookup(self, url: str) -> tuple[str, str, Manifest] | None:
        if not url.startswith(SCHEME):
            return None
        pdh, path = parse(self.keep.current(url))
        return pdh, path, self.keep.manifest(pdh)

    def glob(self, pattern: str) -> list[str]:
        found = self._lookup(pattern)
        if found is None:
            return super().glob(pattern)
        pdh, path, manifest = found
        wanted = path.split("/") if path else []
        candidates = (*manifest.files, *manifest.dirs)
        return sorted(location(pdh, c) for c in candidates if _matches(c.split("/") if c else [], wanted))

    def open(self, fn: str, mode: str) -> IO[Any]:
        found = self._lookup(fn)
        if found is None:
            return super().open(fn, mode)
        _, path, manifest = found
        if path not in manifest.files:
            raise FileNotFoundError(fn)
        data = io.BytesIO(self.keep.read(manifest.files[path]))
        return data if "b" in mode else io.TextIOWrapper(data, encoding="utf-8")

    def exists(self, fn: str) -> bool:
        found = self._lookup(fn)
        if found is None:
            return super().exists(fn)
        _, path, manifest = found
        return path in manifest.files or path in manifest.dirs

    def size(self, fn: str) -> int:
        found = self._lookup(fn)
        if found is None:
            return super().size(fn)
        _, path, manifest = found
        return int(manifest.files[path]["size"])

    def isfile(self, fn: str) -> bool:
        found = self._lookup(fn)
        return super().isfile(fn) if found is None else found[1] in found[2].files

    def isdir(self, fn: str) -> bool:
        found = self._lookup(fn)
        return super().isdir(fn) if found is None else found[1] in found[2].dirs

    def listdir(self, fn: str) -> list[str]:
        found = self._lookup(fn)
        if found is None:
            return super().listdir(fn)
        pdh, path, manifest = found
        return [location(pdh, posixpath.join(path, name)) for name in sorted(manifest.children(path))]

    def join(self, path: str, *paths: str) -> str:
        if path.startswith(SCHEME):
            for part in paths:  # a later location replaces what came before, as absolute paths do
                path = part if part.startswith(SCHEME) else posixpath.join(path, part)
            return path
        return super().join(path, *paths)

    def realpath(self, path: str) -> str:
        if path.startswith(SCHEME):
            return path
        return super().realpath(uri_file_path(path) if path.startswith("file://") else path)


def _matches(parts: list[str], pattern: list[str]) -> bool:
    return len(parts) == len(pattern) and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern))
