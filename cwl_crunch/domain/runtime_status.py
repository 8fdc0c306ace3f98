"""runtime_status: validation of well-known keys and the top-level merge rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import Invalid

STRING_KEYS = frozenset({"error", "errorDetail", "warning", "warningDetail", "activity", "cause"})
COUNTER_KEYS = frozenset({"jobsComplete", "jobsWaiting", "jobsRunning", "jobsFailed"})


def validate_patch(patch: object) -> dict[str, Any]:
    """Return `patch` as a dict if it is a valid runtime_status update, else raise Invalid.

    `None` values are allowed (they delete the key). Well-known keys must be strings, counters
    non-negative integers.
    """
    if not isinstance(patch, Mapping):
        raise Invalid("runtime_status: must be a JSON object")
    problems = []
    for key, value in patch.items():
        if value is None:
            continue
        if key in STRING_KEYS and not isinstance(value, str):
            problems.append(f"runtime_status.{key}: must be a string")
        elif key in COUNTER_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"runtime_status.{key}: must be a non-negative integer")
    if "cause" in patch and patch["cause"] is not None and patch["cause"] not in CAUSES:
        problems.append(f"runtime_status.cause: must be one of {', '.join(sorted(CAUSES))}")
    if problems:
        raise Invalid(*problems)
    return dict(patch)


def merge(current: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """Merge at the top level: keys in `patch` replace, `None` removes, other keys stay."""
    merged = dict(current or {})
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# Failure causes; `retry.py` decides which of them are retried.
CAUSES = frozenset({"user", "infrastructure", "unsatisfiable", "setup", "timeout", "process"})
