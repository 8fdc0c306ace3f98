"""Collection manifests and their portable data hashes (SPEC §9)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .errors import Invalid
from .reuse import canonical_json

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
MAX_ENTRIES = 100_000


def portable_data_hash(manifest: Mapping[str, Any]) -> str:
    """`<sha256 of the canonical manifest JSON>+<its size>`: equal content, equal hash."""
    text = canonical_json(manifest).encode()
    return f"{hashlib.sha256(text).hexdigest()}+{len(text)}"


def validate_manifest(manifest: object) -> dict[str, Any]:
    """A manifest maps relative paths to `{"blob": sha256, "size": n}`, or `dir/` to `{}`."""
    if not isinstance(manifest, Mapping):
        raise Invalid("manifest: must be an object mapping paths to files")
    if len(manifest) > MAX_ENTRIES:
        raise Invalid(f"manifest: more than {MAX_ENTRIES} entries")
    problems = []
    for path, entry in manifest.items():
        if not _valid_path(path):
            problems.append(f"manifest: invalid path {path!r}")
        elif path.endswith("/"):
            if entry != {}:
                problems.append(f"manifest[{path!r}]: a directory entry must be {{}}")
        elif not _valid_file(entry):
            problems.append(f"manifest[{path!r}]: must be {{\"blob\": <sha256>, \"size\": <bytes>}}")
    if problems:
        raise Invalid(*problems[:20])
    return dict(manifest)


def _valid_path(path: object) -> bool:
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        return False
    parts = path.rstrip("/").split("/")
    return all(part not in ("", ".", "..") for part in parts)


def _valid_file(entry: object) -> bool:
    if not isinstance(entry, Mapping) or set(entry) != {"blob", "size"}:
        return False
    size = entry["size"]
    blob = entry["blob"]
    return (
        isinstance(blob, str)
        and bool(SHA256_RE.match(blob))
        and isinstance(size, int)
        and not isinstance(size, bool)
        and 0 <= size < 2**63
    )


def nest(manifest: Mapping[str, Any], directory: str) -> dict[str, Any]:
    """The same files under `directory/`."""
    prefix = directory.rstrip("/") + "/"
    nested = {prefix + path: entry for path, entry in manifest.items()}
    return nested or {prefix: {}}
