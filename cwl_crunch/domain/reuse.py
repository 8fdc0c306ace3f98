"""Reuse keys, per-field digests, candidate preference and miss explanations (SPEC §5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

# The fields that decide whether two pieces of work are the same.
REUSE_FIELDS = (
    "command",
    "cwd",
    "environment",
    "output_path",
    "output_glob",
    "container_image",
    "mounts",
    "secret_mounts",
    "runtime_constraints",
)

RUNTIME_CONSTRAINT_DEFAULTS = {"vcpus": 1, "API": False}

# Preference tiers, first match wins; each is a (state, SQL-independent description) pair the
# store turns into one indexed query.
TIERS = ("complete", "running", "locked", "queued")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _normalise_mount(mount: Mapping[str, Any]) -> dict[str, Any]:
    # Collection content is identified by its hash; where it came from does not matter.
    mount = {k: v for k, v in mount.items() if v is not None}
    if mount.get("kind") in ("collection", "file") and "portable_data_hash" in mount:
        mount.pop("uuid", None)
    return mount


def reuse_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised values of the reuse fields of a request or container definition."""
    constraints = {**RUNTIME_CONSTRAINT_DEFAULTS, **(spec.get("runtime_constraints") or {})}
    return {
        "command": list(spec.get("command") or []),
        "cwd": spec.get("cwd") or "",
        "environment": dict(spec.get("environment") or {}),
        "output_path": spec.get("output_path") or "",
        "output_glob": list(spec.get("output_glob") or []),
        "container_image": spec.get("container_image") or "",
        "mounts": {target: _normalise_mount(m) for target, m in (spec.get("mounts") or {}).items()},
        # Secrets are compared by digest, never stored in the key material.
        "secret_mounts": _digest(spec.get("secret_mounts") or {}),
        "runtime_constraints": {k: v for k, v in constraints.items() if v is not None},
    }


def field_digests(fields: Mapping[str, Any]) -> dict[str, str]:
    """A short digest per reuse field, so a miss can be explained field by field."""
    return {name: _digest(fields[name])[:16] for name in REUSE_FIELDS}


def reuse_key(fields: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the normalised reuse fields."""
    return _digest({name: fields[name] for name in REUSE_FIELDS})


def differences(wanted: Any, found: Any, path: str = "", limit: int = 8) -> list[str]:
    """Human-readable leaf differences, e.g. `runtime_constraints.ram: 4294967296 != 8589934592`."""
    return list(_walk(wanted, found, path))[:limit]


def _walk(wanted: Any, found: Any, path: str) -> Iterator[str]:
    if isinstance(wanted, Mapping) and isinstance(found, Mapping):
        for key in sorted(set(wanted) | set(found), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in found:
                yield f"{sub}: {canonical_json(wanted[key])} != (absent)"
            elif key not in wanted:
                yield f"{sub}: (absent) != {canonical_json(found[key])}"
            else:
                yield from _walk(wanted[key], found[key], sub)
    elif wanted != found:
        yield f"{path}: {canonical_json(wanted)} != {canonical_json(found)}"
