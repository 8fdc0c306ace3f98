"""The user-facing status of a container request, derived from stored fields (SPEC §4.4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

PERMANENT_CAUSES = frozenset({"setup", "unsatisfiable", "timeout", "process", "infrastructure"})
# Every value `derived_status` can answer, in the order a person scans them (the dashboard's filter).
STATUSES = (
    "Uncommitted", "Queued", "On hold", "Running", "Failing", "Warning", "Cancelling",
    "Completed", "Failed", "Retrying", "Cancelled", "Reused",
)


def derived_status(request: Mapping[str, Any], container: Mapping[str, Any] | None) -> str:
    """One word (or two) a person reads in a list of runs."""
    state = request["state"]
    if state == "Uncommitted":
        return "Uncommitted"
    if container is None:
        return "Cancelled" if state == "Final" else "Queued"
    cstate = container["state"]
    rs = container.get("runtime_status") or {}
    if state == "Committed":
        if request.get("held"):
            return "On hold"
        if request.get("priority", 0) == 0 and cstate in ("Queued", "Locked", "Running"):
            return "Cancelling"
        if cstate in ("Queued", "Locked"):
            return "Retrying" if request.get("container_count", 0) > 1 else "Queued"
        if cstate == "Running":
            if rs.get("error"):
                return "Failing"
            if rs.get("warning"):
                return "Warning"
            return "Running"
    return _final_status(request, container)


def _final_status(request: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    if container["state"] == "Complete":
        if container.get("exit_code") != 0:
            return "Failed"
        finished: datetime | None = container.get("finished_at")
        if finished is not None and finished < request["created_at"]:
            return "Reused"
        return "Completed"
    if container["state"] == "Cancelled":
        cause = (container.get("runtime_status") or {}).get("cause")
        if cause in PERMANENT_CAUSES:
            return "Failed"
        return "Cancelled"
    return "Cancelled" if request["state"] == "Final" else "Queued"


def possible_actions(request: Mapping[str, Any], container: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The buttons worth offering for a request (SPEC §4.3); the services still check each one."""
    state = request["state"]
    cstate = container["state"] if container is not None else None
    actions = []
    if state == "Committed":
        if request.get("priority", 0) > 0:
            actions.append("cancel")
        if request.get("held"):
            actions.append("release")
        elif cstate in ("Queued", "Locked"):
            actions.append("hold")
    exit_code = container.get("exit_code") if container is not None else None
    failed = cstate == "Cancelled" or (cstate == "Complete" and exit_code != 0)
    if state == "Final" and failed and "retried_as" not in (request.get("properties") or {}):
        actions.append("retry")
    return tuple(actions)
