"""How requests and containers move each other along (SPEC §4–5).

Called inside a write transaction by the request, container and janitor services:
- `commit`: point a request at an equivalent container, or at a new Queued one;
- `refresh_container`: recompute priority from the live requests, cancel or unlock as needed;
- `container_finished`: cancel children, retry infrastructure failures, finalize requests.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from ..domain import retry
from ..domain.collections import nest, portable_data_hash
from ..domain.priority import container_priority, request_rank
from ..domain.reuse import TIERS, canonical_json, field_digests, reuse_fields, reuse_key
from ..domain.uuids import COLLECTION, CONTAINER, new_uuid
from ..store.repository import Repository, Row
from .context import Context

DEFINITION = (
    "command",
    "cwd",
    "environment",
    "output_path",
    "output_glob",
    "container_image",
    "mounts",
    "secret_mounts",
    "runtime_constraints",
    "scheduling_parameters",
)
# What an unset definition field means.
EMPTY_DEFINITION = {"environment": {}, "output_glob": [], "container_image": "", "mounts": {}, "secret_mounts": {},
                    "runtime_constraints": {}, "scheduling_parameters": {}}
EVENT_MANIFEST_ENTRIES = 100  # the largest output manifest a Complete event carries
# Bound the recursion through nested workflows.
_MAX_DEPTH = 32


def find_reusable(tx: Repository, key: str) -> Row | None:
    """The preferred existing container for a reuse key, first matching tier wins."""
    return tx.first_reuse_candidate(key, TIERS)


def commit(
    tx: Repository, ctx: Context, request: Row, now: datetime, *, insert: bool = False,
    not_before: datetime | None = None,
) -> Row:
    """Give a request that is (being) committed a container: an equivalent one, or a new Queued one.

    `insert`: `request` is a new row, stored here already pointing at its container. Each call is
    a new attempt (`container_count` + 1); `not_before` delays a new container (retry backoff).
    """
    container, new = choose_container(tx, ctx, request, now, not_before)
    attempt = request["container_count"] + 1
    changes = {"state": "Committed", "container_uuid": container["uuid"], "container_count": attempt}
    if insert:
        request = tx.insert_request({**request, **changes}, now)
    else:
        request = tx.update_request(request, changes, now)
    if new:  # stored after the request, so the event stream shows cause before effect
        container = tx.insert_container(container, now)
    tx.link_attempt(request["uuid"], container["uuid"], attempt)
    if container["state"] in ("Complete", "Cancelled"):
        return finalize_request(tx, ctx, request, container, now)
    if not new:
        refresh_container(tx, ctx, container["uuid"], now)
    return tx.get_request(request["uuid"]) or request


def choose_container(
    tx: Repository, ctx: Context, request: Row, now: datetime, not_before: datetime | None = None
) -> tuple[Row, bool]:
    """The container that will satisfy `request`, and whether it is new: Queued, wanted by
    `request` alone, not stored yet (the caller inserts it).

    A new container is born with the priority `request` gives it, so nothing needs recomputing.
    """
    fields = reuse_fields(request)
    key = reuse_key(fields)
    if request["use_existing"]:
        tx.lock_key(key)  # concurrent commits of the same work get one container
        found = find_reusable(tx, key)
        if found is not None:
            return found, False
    scheduling = dict(request.get("scheduling_parameters") or {})
    if not_before is not None:
        scheduling["not_before"] = not_before.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sole_demand = {
        "wanted": True,
        "top_priority": None if request["held"] or request["requesting_container_uuid"] else request["priority"],
        "top_created_at": request["created_at"],
        "child_priority": _parent_priority(tx, request),
    }
    row: dict[str, Any] = {name: request.get(name) for name in DEFINITION}
    row.update({name: empty for name, empty in EMPTY_DEFINITION.items() if row[name] is None})
    row.update(
        uuid=new_uuid(ctx.settings.cluster_id, CONTAINER),
        state="Queued",
        scheduling_parameters=scheduling,
        priority=_priority(sole_demand),
        progress=None,
        runtime_status={},
        scheduling_status="",
        output_properties={},
        lock_count=0,
        cost=0.0,
        subrequests_cost=0.0,
        reuse_key=key,
        reuse_digests=field_digests(fields),
        command_digest=command_digest(fields),
        created_at=now,
        modified_at=now,
    )
    return row, True


def _parent_priority(tx: Repository, request: Row) -> int | None:
    """A child request (made from inside a container) wants what its running parent is worth."""
    if request["held"] or not request["requesting_container_uuid"]:
        return None
    parent = tx.get_container(request["requesting_container_uuid"])
    return parent["priority"] if parent is not None and parent["state"] in ("Locked", "Running") else None


def _priority(demand: Row) -> int:
    ranks = [demand["child_priority"] or 0]
    if demand["top_priority"]:
        ranks.append(request_rank(demand["top_priority"], demand["top_created_at"]))
    return container_priority(ranks)


def command_digest(fields: dict[str, Any]) -> str:
    """Indexed, so explain-reuse finds containers running the same command quickly."""
    return hashlib.sha256(canonical_json(fields["command"]).encode()).hexdigest()[:16]


def refresh_container(tx: Repository, ctx: Context, container_uuid: str, now: datetime, depth: int = 0) -> None:
    """Recompute a live container's priority from the requests that want it.

    Nobody wants it any more and it has not started → Cancelled. Everyone wanting it is on hold
    while it is Locked → back to Queued. Children of a running container follow its priority.
    """
    container = tx.get_container(container_uuid, for_update=True)
    if container is None or container["state"] in ("Complete", "Cancelled"):
        return
    demand = tx.demand_for(container_uuid)
    priority = _priority(demand)
    if not demand["wanted"] and container["state"] in ("Queued", "Locked"):
        cancelled = tx.update_container(
            container,
            {**final_changes(now), "state": "Cancelled", "priority": 0, "runtime_status": {"cause": "user"}},
            now,
        )
        container_finished(tx, ctx, cancelled, now, depth)
        return
    changes: dict[str, Any] = {"priority": priority}
    if priority == 0 and container["state"] == "Locked":
        changes.update(unlock_changes())
        tx.delete_container_tokens(container_uuid)
    updated = tx.update_container(container, changes, now)
    if updated["priority"] != container["priority"] and updated["state"] in ("Locked", "Running") and depth < _MAX_DEPTH:
        for child in tx.committed_children_of(container_uuid):
            if child["container_uuid"]:
                refresh_container(tx, ctx, child["container_uuid"], now, depth + 1)


def unlock_changes() -> dict[str, Any]:
    """Locked → Queued: forget the lock and the runtime_status of that dispatch attempt."""
    return {
        "state": "Queued",
        "locked_by_uuid": None,
        "dispatcher_uuid": None,
        "auth": None,
        "runtime_status": {},
        "progress": None,
        "scheduling_status": "",
    }


def final_changes(now: datetime) -> dict[str, Any]:
    """Entering Complete or Cancelled: timestamps, and secrets go away."""
    return {"finished_at": now, "secret_mounts": {}, "auth": None}


def result_details(tx: Repository, container: Row, changes: dict[str, Any]) -> dict[str, Any] | None:
    """What a container's Complete event carries besides `exit_code` and `output`: the output's
    manifest and its files' SHA-1 digests, when it has at most EVENT_MANIFEST_ENTRIES entries. A
    workflow runner then collects a step's outputs without reading the collection (one call fewer
    per step); a larger output is read as before."""
    output = changes.get("output", container["output"])
    source = tx.collection_by_pdh(output) if output else None
    if source is None or len(source["manifest"]) > EVENT_MANIFEST_ENTRIES:
        return None
    details: dict[str, Any] = {"output_manifest": source["manifest"]}
    digests = (changes.get("output_properties", container["output_properties"]) or {}).get("sha1")
    if digests:
        details["output_sha1"] = digests
    return details


def container_finished(tx: Repository, ctx: Context, container: Row, now: datetime, depth: int = 0) -> None:
    """A container reached Complete or Cancelled: settle everything that depended on it."""
    tx.delete_container_tokens(container["uuid"])
    if depth < _MAX_DEPTH:
        for child in tx.committed_children_of(container["uuid"]):
            cancel_request(tx, ctx, child, now, depth + 1)
    cause = (container["runtime_status"] or {}).get("cause")
    for request in tx.committed_requests_for(container["uuid"]):
        wants_more = request["priority"] > 0 and container["state"] == "Cancelled"
        if wants_more and retry.should_retry(cause, request["container_count"], request["container_count_max"]):
            not_before = retry.next_not_before(now, request["container_count"])
            commit(tx, ctx, request, now, not_before=not_before)
        else:
            finalize_request(tx, ctx, request, container, now)


def cancel_request(tx: Repository, ctx: Context, request: Row, now: datetime, depth: int = 0) -> Row:
    """Priority 0: the request no longer wants its container; it becomes Final once that settles."""
    request = tx.update_request(request, {"priority": 0, "held": False}, now)
    container_uuid = request["container_uuid"]
    if request["state"] != "Committed" or container_uuid is None:
        return request
    refresh_container(tx, ctx, container_uuid, now, depth)
    request = tx.get_request(request["uuid"]) or request
    container = tx.get_container(container_uuid)
    if request["state"] == "Committed" and container is not None and container["state"] in ("Complete", "Cancelled"):
        request = finalize_request(tx, ctx, request, container, now)
    return request


def finalize_request(tx: Repository, ctx: Context, request: Row, container: Row, now: datetime) -> Row:
    """Committed → Final: log and output collections, cumulative cost, secrets dropped."""
    first_and_only = request["container_count"] == 1 and request["container_uuid"] == container["uuid"]
    attempts = [container] if first_and_only else tx.attempts_of(request["uuid"])
    cost = sum(a["cost"] or 0.0 for a in attempts if a["created_at"] >= request["created_at"])
    changes: dict[str, Any] = {
        "state": "Final",
        "log_uuid": _log_collection(tx, ctx, request, container, attempts, now),
        "output_uuid": _output_collection(tx, ctx, request, container, now),
        "cumulative_cost": cost,
        "runtime_token": None,
        "secret_mounts": {},
        "held": False,
    }
    return tx.update_request(request, changes, now)


def _log_collection(
    tx: Repository, ctx: Context, request: Row, final: Row, attempts: list[Row], now: datetime
) -> str | None:
    manifest: dict[str, Any] = {}
    for attempt in attempts:
        log = tx.collection_by_pdh(attempt["log"]) if attempt["log"] else None
        if log is None:
            continue
        manifest.update(nest(log["manifest"], f"log for container {attempt['uuid']}"))
        if attempt["uuid"] == final["uuid"]:
            manifest.update(log["manifest"])
    if not manifest:
        return None
    return _new_collection(tx, ctx, request, f"Container log for request {request['uuid']}", manifest, {}, now)


def _output_collection(tx: Repository, ctx: Context, request: Row, container: Row, now: datetime) -> str | None:
    source = tx.collection_by_pdh(container["output"]) if container["output"] else None
    if source is None:
        return None
    properties = {
        "type": "intermediate" if request["requesting_container_uuid"] else "output",
        "container_request": request["uuid"],
        **(request["output_properties"] or {}),
    }
    digests = (container["output_properties"] or {}).get("sha1")
    if digests:  # what crunch-run recorded of the files: a reader need not checksum them itself
        properties["sha1"] = digests
    name = request["output_name"] or f"Container output for request {request['uuid']}"
    return _new_collection(tx, ctx, request, name, source["manifest"], properties, now)


def _new_collection(
    tx: Repository, ctx: Context, request: Row, name: str, manifest: dict[str, Any], properties: dict[str, Any], now: datetime
) -> str:
    uuid = new_uuid(ctx.settings.cluster_id, COLLECTION)
    tx.insert_collection(
        {
            "uuid": uuid,
            "owner_uuid": request["owner_uuid"],
            "name": name,
            "portable_data_hash": portable_data_hash(manifest),
            "manifest": manifest,
            "properties": properties,
            "created_at": now,
            "modified_at": now,
            "trash_at": None,
        }
    )
    return uuid
