"""Validation of a container request's definition at commit time (SPEC §4.2)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import Invalid

PDH_RE = re.compile(r"^[0-9a-f]{64}\+[0-9]+\Z")
MOUNT_KINDS = frozenset({"collection", "tmp", "file", "json", "text"})
STREAM_TARGETS = frozenset({"stdin", "stdout", "stderr"})
MAX_PRIORITY = 1000


def validate_priority(value: object) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        return [f"priority: must be an integer from 0 to {MAX_PRIORITY}"]
    return []


def validate_for_commit(spec: Mapping[str, Any]) -> None:
    """Raise Invalid listing every problem that prevents committing `spec`."""
    problems: list[str] = []
    problems += _command(spec.get("command"))
    problems += _absolute_path("cwd", spec.get("cwd"))
    problems += _absolute_path("output_path", spec.get("output_path"))
    problems += _environment(spec.get("environment"))
    problems += _mounts(spec.get("mounts"), spec.get("output_path"))
    problems += _mounts(spec.get("secret_mounts"), spec.get("output_path"), field="secret_mounts")
    problems += _runtime_constraints(spec.get("runtime_constraints"))
    problems += _string_list("output_glob", spec.get("output_glob"))
    problems += validate_scheduling_parameters(spec.get("scheduling_parameters"))
    if not isinstance(spec.get("container_image") or "", str):
        problems.append("container_image: must be a string")
    problems += validate_priority(spec.get("priority", 0))
    mounts = spec.get("mounts") or {}
    if isinstance(mounts, Mapping) and isinstance(spec.get("output_path"), str):
        if spec["output_path"] not in mounts:
            problems.append(f"output_path: {spec['output_path']!r} must be the target of a mount")
    if problems:
        raise Invalid(*problems)


def _command(command: object) -> list[str]:
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        return ["command: must be a non-empty list of strings"]
    return []


def _absolute_path(name: str, value: object) -> list[str]:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        return [f"{name}: must be an absolute path"]
    return []


def _string_list(name: str, value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [f"{name}: must be a list of strings"]
    return []


def _environment(env: object) -> list[str]:
    if env is None:
        return []
    if not isinstance(env, Mapping):
        return ["environment: must be an object of strings"]
    problems = []
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            problems.append(f"environment: invalid variable name {key!r}")
        elif not isinstance(value, str) or "\0" in value:
            problems.append(f"environment.{key}: must be a string")
    return problems


def _runtime_constraints(rc: object) -> list[str]:
    if rc is None:
        return []
    if not isinstance(rc, Mapping):
        return ["runtime_constraints: must be an object"]
    problems = []
    for name in ("vcpus", "ram"):
        value = rc.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append(f"runtime_constraints.{name}: must be a positive integer")
    if rc.get("API") is not None and not isinstance(rc.get("API"), bool):
        problems.append("runtime_constraints.API: must be true or false")
    return problems


def _mounts(mounts: object, output_path: object, field: str = "mounts") -> list[str]:
    if mounts is None:
        return []
    if not isinstance(mounts, Mapping):
        return [f"{field}: must be an object of mounts"]
    problems = []
    for target, mount in mounts.items():
        where = f"{field}[{target!r}]"
        if target not in STREAM_TARGETS and (not target.startswith("/") or "\0" in target):
            problems.append(f"{where}: target must be an absolute path or stdin/stdout/stderr")
            continue
        if not isinstance(mount, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        problems += _mount(where, target, mount, output_path)
    return problems


def _mount(where: str, target: str, mount: Mapping[str, Any], output_path: object) -> list[str]:
    kind = mount.get("kind")
    if kind not in MOUNT_KINDS:
        return [f"{where}.kind: must be one of {', '.join(sorted(MOUNT_KINDS))}"]
    pdh = mount.get("portable_data_hash")
    if pdh is not None and (not isinstance(pdh, str) or not PDH_RE.match(pdh)):
        return [f"{where}.portable_data_hash: {pdh!r} is not a portable data hash"]
    path = mount.get("path")
    if path is not None and not isinstance(path, str):
        return [f"{where}.path: must be a string"]
    if kind == "collection" and pdh is None and mount.get("uuid") is None and not mount.get("writable"):
        return [f"{where}: a collection mount needs portable_data_hash (or writable: true for an empty one)"]
    if kind == "tmp":
        capacity = mount.get("capacity", 0)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            return [f"{where}.capacity: must be a non-negative integer"]
    if kind == "text" and not isinstance(mount.get("content"), str):
        return [f"{where}.content: a text mount needs string content"]
    if kind == "json" and "content" not in mount:
        return [f"{where}.content: a json mount needs content"]
    if kind == "file":
        if target in ("stdout", "stderr"):
            if not isinstance(path, str) or not isinstance(output_path, str) or not path.startswith(
                output_path.rstrip("/") + "/"
            ):
                return [f"{where}.path: {target} must be a file under output_path"]
        elif pdh is None or path is None:
            return [f"{where}: a file mount needs portable_data_hash and path"]
    if target == "stdin" and kind not in ("collection", "file", "text", "json"):
        return [f"{where}: stdin must come from a collection, file, text or json mount"]
    return []


def validate_scheduling_parameters(sp: object) -> list[str]:
    if sp is None:
        return []
    if not isinstance(sp, Mapping):
        return ["scheduling_parameters: must be an object"]
    problems = []
    partitions = sp.get("partitions")
    if partitions is not None and (
        not isinstance(partitions, list) or not all(isinstance(p, str) and p for p in partitions)
    ):
        problems.append("scheduling_parameters.partitions: must be a list of partition names")
    max_run_time = sp.get("max_run_time")
    if max_run_time is not None and (
        isinstance(max_run_time, bool) or not isinstance(max_run_time, int) or max_run_time < 0
    ):
        problems.append("scheduling_parameters.max_run_time: must be a non-negative number of seconds")
    if sp.get("not_before") is not None and parse_time(sp["not_before"]) is None:
        problems.append("scheduling_parameters.not_before: must be an RFC 3339 time")
    if sp.get("supervisor") is not None and not isinstance(sp["supervisor"], bool):
        problems.append("scheduling_parameters.supervisor: must be true or false")
    return problems


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 / ISO 8601 time as an aware UTC datetime, or None if it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
        return None


def validate_container_count_max(value: object, limit: int) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        return [f"container_count_max: must be an integer from 1 to {limit}"]
    return []
