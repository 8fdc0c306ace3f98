"""Explain reuse: which container a request would get or got, and why others were not chosen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.attributes import REQUEST_CREATABLE, require_writable
from ..domain.errors import Invalid
from ..domain.principal import Principal
from ..domain.reuse import (
    REUSE_FIELDS,
    differences,
    field_digests,
    reuse_fields,
    reuse_key,
)
from ..store.query import visible_containers
from ..store.repository import Repository, Row
from ..store.schema import containers
from . import lifecycle
from .access import visible_request
from .context import Context

NEAREST = 5
_SCAN = 50


def explain_definition(ctx: Context, principal: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
    require_writable(body, REQUEST_CREATABLE, "in a reuse question")
    with ctx.store.read() as tx:
        found = lifecycle.find_reusable(tx, _key_of(body)) if body.get("use_existing", True) else None
        return _explain(tx, principal, body, found, chosen_by="would")


def explain_request(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    with ctx.store.read() as tx:
        request = visible_request(tx, principal, uuid)
        if request["container_uuid"] is None:
            found = lifecycle.find_reusable(tx, _key_of(request)) if request["use_existing"] else None
            return _explain(tx, principal, request, found, chosen_by="would")
        return _explain(tx, principal, request, tx.get_container(request["container_uuid"]), chosen_by="was")


def _key_of(spec: Mapping[str, Any]) -> str:
    try:
        return reuse_key(reuse_fields(spec))
    except (TypeError, AttributeError, ValueError):
        raise Invalid("the request definition is malformed: command, environment, mounts… have the wrong types") from None


def _explain(tx: Repository, principal: Principal, spec: Mapping[str, Any], chosen: Row | None, chosen_by: str) -> dict[str, Any]:
    key = _key_of(spec)
    fields = reuse_fields(spec)
    if chosen is not None:
        decision = f"{chosen_by} use container {chosen['uuid']} ({_describe(chosen)})"
    elif not spec.get("use_existing", True):
        decision = f"{chosen_by} create a new container: use_existing is false"
    else:
        decision = f"{chosen_by} create a new container: no reusable container has reuse key {key}"
    return {
        "reuse_key": key,
        "container_uuid": chosen["uuid"] if chosen else None,
        "decision": decision,
        "nearest": _nearest(tx, principal, fields, key, exclude=chosen["uuid"] if chosen else None),
    }


def _describe(container: Row) -> str:
    state = container["state"]
    if state == "Complete":
        return f"Complete with exit code {container['exit_code']}, finished {container['finished_at']:%Y-%m-%dT%H:%M:%SZ}"
    return state


def _nearest(tx: Repository, principal: Principal, fields: Mapping[str, Any], key: str, exclude: str | None) -> list[dict[str, Any]]:
    """The most similar other containers, with the fields that differ (or why same work was skipped)."""
    wanted = field_digests(fields)
    command_digest = lifecycle.command_digest(fields)
    scan, _ = tx.list(
        containers,
        [containers.c.command_digest == command_digest, *visible_containers(principal)],
        [containers.c.created_at.desc()],
        _SCAN,
        0,
        count=False,
    )
    if not scan:
        scan, _ = tx.list(containers, visible_containers(principal), [containers.c.created_at.desc()], _SCAN, 0, count=False)
    ranked = []
    for container in scan:
        if container["uuid"] == exclude:
            continue
        differing = [name for name in REUSE_FIELDS if container["reuse_digests"].get(name) != wanted[name]]
        ranked.append((len(differing), container, differing))
    ranked.sort(key=lambda item: (item[0], -item[1]["created_at"].timestamp()))
    return [_candidate(fields, key, container, differing) for _, container, differing in ranked[:NEAREST]]


def _candidate(fields: Mapping[str, Any], key: str, container: Row, differing: list[str]) -> dict[str, Any]:
    found = reuse_fields(container)
    details: list[str] = []
    for name in differing:
        if name == "secret_mounts":
            details.append("secret_mounts: different secrets (compared by digest)")
        else:
            details += differences(fields[name], found[name], name)
    if container["reuse_key"] == key:
        details = [_why_same_work_skipped(container)]
    return {"uuid": container["uuid"], "state": container["state"], "differences": details}


def _why_same_work_skipped(container: Row) -> str:
    state = container["state"]
    if state == "Cancelled":
        return "same work, but Cancelled containers are never reused"
    if state == "Complete" and container["exit_code"] != 0:
        return f"same work, but it exited with code {container['exit_code']}"
    if state == "Complete":
        return "same work, but its log or output collection no longer exists"
    if state == "Running" and (container["runtime_status"] or {}).get("error"):
        return f"same work, but its runtime_status has an error: {container['runtime_status']['error']}"
    if state == "Running":
        return "same work, but its priority is 0 (it is being cancelled)"
    return f"same work ({state}), a better candidate was preferred"
