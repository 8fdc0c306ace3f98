"""`crunchctl status` and the request verbs (cancel, hold, release, retry): runs as a person reads them.

Gathering (API calls) and rendering (pure, tested by value) are separate, so `--json` prints
exactly what the table shows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..client import Client
from ..domain.progress import counters_text

# What each verb does to a request (SPEC §4.3): a method, a path below the request, a body.
ACTIONS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "cancel": ("PUT", "", {"priority": 0}),
    "hold": ("POST", "/hold", None),
    "release": ("POST", "/release", None),
    "retry": ("POST", "/retry", None),
}
_REQUEST_FIELDS = ["uuid", "name", "status", "state", "created_at", "container_uuid", "priority",
                   "container_count", "container_count_max"]


def gather_runs(api: Client, limit: int) -> list[dict[str, Any]]:
    """The newest top-level requests (not workflow steps), each with what its container says."""
    params = {"filters": [["requesting_container_uuid", "=", None]], "order": "created_at desc",
              "limit": str(limit), "select": _REQUEST_FIELDS, "count": "none"}
    requests = api.request("GET", "/container_requests", params=params)["items"]
    containers = _containers(api, [r["container_uuid"] for r in requests if r["container_uuid"]])
    return [_run(request, containers.get(request["container_uuid"] or "")) for request in requests]


def gather_run(api: Client, uuid: str) -> dict[str, Any]:
    """One request with its container's state, scheduling status and children (a workflow's steps)."""
    request = api.get("container_requests", uuid)
    container = api.get("containers", request["container_uuid"]) if request["container_uuid"] else None
    run = _run(request, container)
    run["scheduling_status"] = api.request("GET", f"/container_requests/{uuid}/container_status")["scheduling_status"]
    run["container"] = None if container is None else {
        "uuid": container["uuid"], "state": container["state"], "exit_code": container["exit_code"],
        "attempt": request.get("container_count"), "attempts_allowed": request.get("container_count_max")}
    children = [] if container is None else list(api.list(
        "container_requests", filters=[["requesting_container_uuid", "=", container["uuid"]]],
        order="created_at", select=_REQUEST_FIELDS))
    child_containers = _containers(api, [c["container_uuid"] for c in children if c["container_uuid"]])
    run["children"] = [_run(child, child_containers.get(child["container_uuid"] or "")) for child in children]
    return run


def _containers(api: Client, uuids: list[str]) -> dict[str, dict[str, Any]]:
    if not uuids:
        return {}
    found = api.list("containers", filters=[["uuid", "in", uuids]], select=["uuid", "state", "runtime_status", "exit_code"])
    return {c["uuid"]: c for c in found}


def _run(request: dict[str, Any], container: dict[str, Any] | None) -> dict[str, Any]:
    runtime_status = (container or {}).get("runtime_status") or {}
    return {
        "uuid": request["uuid"], "name": request.get("name") or "", "status": request["status"],
        "created_at": request["created_at"], "progress": counters_text(runtime_status),
        "error": runtime_status.get("error"), "warning": runtime_status.get("warning"),
        "activity": runtime_status.get("activity"),
    }


def render_table(runs: list[dict[str, Any]], now: datetime) -> str:
    """A line per run (and its error or warning under it)."""
    if not runs:
        return "no runs\n"
    rows = [("UUID", "STATUS", "AGE", "NAME", "PROGRESS")]
    rows += [(r["uuid"], r["status"], age(r["created_at"], now), r["name"], r["progress"] or "") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
        run = runs[index - 1] if index else None
        message = run and (run["error"] and f"error: {run['error']}" or run["warning"] and f"warning: {run['warning']}")
        if message:
            lines.append(" " * (widths[0] + 2) + "└ " + message)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_run(run: dict[str, Any], now: datetime) -> str:
    """One run: what is wrong first, then what it is doing, then its steps."""
    fields = [("Request", f"{run['uuid']}  {run['name']}".rstrip()), ("Status", run["status"]),
              ("Error", run["error"]), ("Warning", run["warning"]), ("Activity", run["activity"]),
              ("Scheduling", run["scheduling_status"]), ("Progress", run["progress"]),
              ("Created", f"{run['created_at']} ({age(run['created_at'], now)} ago)")]
    container = run["container"]
    if container is not None:
        attempt = f", attempt {container['attempt']} of {container['attempts_allowed']}" if container["attempt"] else ""
        exit_code = f", exit code {container['exit_code']}" if container["exit_code"] is not None else ""
        fields.append(("Container", f"{container['uuid']} {container['state']}{exit_code}{attempt}"))
    lines = [f"{label + ':':<12}{value}" for label, value in fields if value]
    if run["children"]:
        lines += ["", f"Steps ({len(run['children'])}):", render_table(run["children"], now).rstrip("\n")]
    return "\n".join(lines) + "\n"


def age(created_at: str, now: datetime) -> str:
    """How long ago, in the largest whole unit: 42s, 5m, 3h, 2d."""
    seconds = max(0, int((now - datetime.fromisoformat(created_at.replace("Z", "+00:00"))).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def act(api: Client, uuid: str, action: str) -> dict[str, Any]:
    """Cancel, hold, release or retry a request; the request the API answers with (retry: the new one)."""
    method, suffix, body = ACTIONS[action]
    return api.request(method, f"/container_requests/{uuid}{suffix}", body)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
