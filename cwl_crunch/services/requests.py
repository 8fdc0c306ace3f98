"""Container request use cases: create/commit, update, cancel, hold, release, retry, status."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..domain.attributes import (
    REQUEST_CREATABLE,
    require_request_update,
    require_writable,
)
from ..domain.errors import Forbidden, Invalid
from ..domain.principal import Principal
from ..domain.states import (
    RequestState,
    parse_request_state,
    require_request_transition,
)
from ..domain.uuids import CONTAINER_REQUEST, new_uuid
from ..domain.validation import (
    parse_time,
    validate_container_count_max,
    validate_for_commit,
    validate_priority,
    validate_scheduling_parameters,
)
from ..store.query import visible_requests
from ..store.repository import Repository, Row
from ..store.schema import container_requests
from . import collections, lifecycle
from .access import visible_request, writable_request
from .context import Context
from .listing import ListParams, list_rows
from .records import format_time, request_view

_EMPTY_DEFAULTS: dict[str, Any] = {
    **lifecycle.EMPTY_DEFINITION,
    "name": "",
    "description": "",
    "properties": {},
    "output_properties": {},
    "use_existing": True,
}
_NOT_NULL = ("name", "description", "properties", "priority", "use_existing", "container_count_max",
             "output_properties", "state")
VIEW_FIELDS = [c.name for c in container_requests.c if c.name not in ("held", "secret_mounts", "runtime_token")] + [
    "on_hold",
    "status",
]


def _written(ctx: Context, work: Callable[[Repository], Row]) -> dict[str, Any]:
    """Run a write and answer with the request as it now stands, status included."""

    def respond(tx: Repository) -> dict[str, Any]:
        request = work(tx)
        container = tx.get_container(request["container_uuid"]) if request.get("container_uuid") else None
        return request_view(request, container)

    return ctx.store.transact(respond)


def _check_values(ctx: Context, values: Mapping[str, Any]) -> None:
    """Type checks that apply whatever the state (commit adds the full validation)."""
    problems = [f"{name}: must not be null" for name in _NOT_NULL if name in values and values[name] is None]
    if values.get("priority") is not None:
        problems += validate_priority(values["priority"])
    if values.get("container_count_max") is not None:
        problems += validate_container_count_max(values["container_count_max"], ctx.settings.max_container_count_max)
    if "scheduling_parameters" in values:
        problems += validate_scheduling_parameters(values["scheduling_parameters"])
    if values.get("expires_at") is not None and parse_time(values["expires_at"]) is None:
        problems.append("expires_at: must be an RFC 3339 time")
    if problems:
        raise Invalid(*problems)


def _for_storage(values: Mapping[str, Any]) -> dict[str, Any]:
    stored = dict(values)
    if stored.get("expires_at") is not None:
        stored["expires_at"] = parse_time(stored["expires_at"])
    return stored


def _mounted_collections(ctx: Context, principal: Principal, values: Mapping[str, Any],
                         uuid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`values` with each collection mount's `manifest` replaced by the portable data hash of a
    collection saved from it, and those collections' records (checked, for the request's own
    transaction to insert). A client staging a step's files then creates its request in one call
    instead of two, and the request is stored as it would be after a separate save (reuse sees
    no difference)."""
    mounts = values.get("mounts")
    if not isinstance(mounts, Mapping) or not any(isinstance(m, Mapping) and "manifest" in m for m in mounts.values()):
        return dict(values), []
    saved: dict[str, dict[str, Any]] = {}
    stored: dict[str, Any] = {}
    for target, mount in mounts.items():
        if not isinstance(mount, Mapping) or "manifest" not in mount:
            stored[target] = mount
            continue
        where = f"mounts[{target!r}]"
        if mount.get("kind") != "collection":
            raise Invalid(f"{where}.manifest: only a collection mount takes a manifest")
        row = collections.new_row(ctx, principal, mount["manifest"], f"mounted at {target} by {uuid}",
                                  field=f"{where}.manifest")
        pdh = row["portable_data_hash"]
        if mount.get("portable_data_hash") not in (None, pdh):
            raise Invalid(f"{where}.portable_data_hash: {mount['portable_data_hash']} is not the hash of its manifest ({pdh})")
        stored[target] = {**{k: v for k, v in mount.items() if k != "manifest"}, "portable_data_hash": pdh}
        saved.setdefault(pdh, row)
    return {**values, "mounts": stored}, list(saved.values())


def _validate_commit(request: Row) -> None:
    if request["priority"] <= 0:
        raise Invalid("priority: must be at least 1 to commit a request (0 means cancel)")
    validate_for_commit(request)


def create(ctx: Context, principal: Principal, body: Mapping[str, Any]) -> dict[str, Any]:
    require_writable(body, REQUEST_CREATABLE, "when creating a container request")
    _check_values(ctx, body)
    state = parse_request_state(body.get("state", RequestState.UNCOMMITTED.value))
    require_request_transition(None, state)
    uuid = new_uuid(ctx.settings.cluster_id, CONTAINER_REQUEST)
    body, mounted = _mounted_collections(ctx, principal, body, uuid)
    now = ctx.now()
    row = {
        **_EMPTY_DEFAULTS,
        "priority": ctx.settings.default_request_priority,
        "container_count_max": ctx.settings.default_container_count_max,
        **{k: v for k, v in _for_storage(body).items() if v is not None},
        "uuid": uuid,
        "owner_uuid": principal.user_uuid,
        "state": state.value,
        "requesting_container_uuid": principal.container_uuid,
        "container_uuid": None,
        "container_count": 0,
        "held": False,
        "cumulative_cost": 0.0,
        "created_at": now,
        "modified_at": now,
    }
    if state == RequestState.COMMITTED:
        _validate_commit(row)

    def work(tx: Repository) -> Row:
        for collection in mounted:
            tx.insert_collection(collection)
        if state == RequestState.COMMITTED:
            return lifecycle.commit(tx, ctx, row, now, insert=True)
        return tx.insert_request(row, now)

    return _written(ctx, work)


def get(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    with ctx.store.read() as tx:
        request = visible_request(tx, principal, uuid)
        container = tx.get_container(request["container_uuid"]) if request["container_uuid"] else None
    return request_view(request, container)


def list_requests(ctx: Context, principal: Principal, params: ListParams) -> dict[str, Any]:
    with ctx.store.read() as tx:
        def views(rows: list[Row]) -> list[dict[str, Any]]:
            by_uuid = tx.containers_by_uuid([r["container_uuid"] for r in rows if r["container_uuid"]])
            return [request_view(r, by_uuid.get(r["container_uuid"])) for r in rows]

        return list_rows(tx, container_requests, params, visible_requests(principal), views, known=VIEW_FIELDS)


def update(ctx: Context, principal: Principal, uuid: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    _check_values(ctx, patch)
    patch, mounted = _mounted_collections(ctx, principal, patch, uuid)

    def work(tx: Repository) -> Row:
        request = writable_request(tx, principal, uuid)
        now = ctx.now()
        state = RequestState(request["state"])
        new_state = parse_request_state(patch.get("state", state.value))
        if new_state != state:
            require_request_transition(state, new_state)
        require_request_update(state, patch)
        for collection in mounted:
            tx.insert_collection(collection)
        changes = {k: v for k, v in _for_storage(patch).items() if k != "state"}
        if new_state == RequestState.FINAL or (state == RequestState.COMMITTED and changes.get("priority") == 0):
            request = tx.update_request(request, {k: v for k, v in changes.items() if k != "priority"}, now)
            return lifecycle.cancel_request(tx, ctx, request, now)
        request = tx.update_request(request, changes, now)
        if new_state == RequestState.COMMITTED and state == RequestState.UNCOMMITTED:
            _validate_commit(request)  # an error rolls the edit back too
            return lifecycle.commit(tx, ctx, request, now)
        if state == RequestState.COMMITTED and "priority" in changes and request["container_uuid"]:
            lifecycle.refresh_container(tx, ctx, request["container_uuid"], now)
        return request

    return _written(ctx, work)


def delete(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    """Uncommitted: deleted. Committed: cancelled. Final: unchanged."""

    def work(tx: Repository) -> Row:
        request = writable_request(tx, principal, uuid)
        now = ctx.now()
        if request["state"] == RequestState.UNCOMMITTED.value:
            tx.delete_request(uuid, now)
            return request
        if request["state"] == RequestState.COMMITTED.value:
            return lifecycle.cancel_request(tx, ctx, request, now)
        return request

    return _written(ctx, work)


def _hold_target(tx: Repository, principal: Principal, uuid: str, action: str) -> tuple[Row, Row]:
    request = writable_request(tx, principal, uuid)
    container = tx.get_container(request["container_uuid"]) if request["container_uuid"] else None
    if request["state"] != RequestState.COMMITTED.value or container is None:
        raise Invalid(f"cannot {action} a request in state {request['state']}: only Committed requests")
    if container["state"] == "Running":
        raise Invalid(f"cannot {action} a request whose container is Running: cancel it instead")
    if container["state"] in ("Complete", "Cancelled"):
        raise Invalid(f"cannot {action} a request whose container is {container['state']}")
    return request, container


def hold(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    def work(tx: Repository) -> Row:
        request, container = _hold_target(tx, principal, uuid, "hold")
        now = ctx.now()
        request = tx.update_request(request, {"held": True}, now)
        lifecycle.refresh_container(tx, ctx, container["uuid"], now)
        return request

    return _written(ctx, work)


def release(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    def work(tx: Repository) -> Row:
        request, container = _hold_target(tx, principal, uuid, "release")
        now = ctx.now()
        request = tx.update_request(request, {"held": False}, now)
        lifecycle.refresh_container(tx, ctx, container["uuid"], now)
        return request

    return _written(ctx, work)


def retry(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    """A Final request whose container failed → a new Committed request with the same definition."""
    if principal.is_container:
        raise Forbidden("container tokens cannot retry requests")

    def work(tx: Repository) -> Row:
        old = visible_request(tx, principal, uuid, for_update=True)
        container = tx.get_container(old["container_uuid"]) if old["container_uuid"] else None
        failed = container is not None and (
            container["state"] == "Cancelled" or (container["state"] == "Complete" and container["exit_code"] != 0)
        )
        if old["state"] != RequestState.FINAL.value or not failed:
            raise Invalid("only a Final request whose container failed or was cancelled can be retried")
        now = ctx.now()
        copied = {k: old[k] for k in (*lifecycle.DEFINITION, "name", "description", "use_existing",
                                       "container_count_max", "output_name", "output_properties")}
        new = {
            **copied,
            "uuid": new_uuid(ctx.settings.cluster_id, CONTAINER_REQUEST),
            "owner_uuid": old["owner_uuid"],
            "properties": {**(old["properties"] or {}), "retry_of": old["uuid"]},
            "state": RequestState.COMMITTED.value,
            "priority": ctx.settings.default_request_priority,
            "requesting_container_uuid": old["requesting_container_uuid"],
            "container_uuid": None,
            "container_count": 0,
            "held": False,
            "cumulative_cost": 0.0,
            "runtime_token": None,
            "log_uuid": None,
            "output_uuid": None,
            "expires_at": None,
            "created_at": now,
            "modified_at": now,
        }
        new["properties"].pop("retried_as", None)
        _validate_commit(new)
        new = lifecycle.commit(tx, ctx, new, now, insert=True)
        tx.update_request(old, {"properties": {**(old["properties"] or {}), "retried_as": new["uuid"]}}, now)
        return new

    return _written(ctx, work)


def container_status(ctx: Context, principal: Principal, uuid: str) -> dict[str, Any]:
    with ctx.store.read() as tx:
        request = visible_request(tx, principal, uuid)
        container = tx.get_container(request["container_uuid"]) if request["container_uuid"] else None
    if container is None:
        return {"uuid": None, "state": None, "scheduling_status": "No container is assigned."}
    return {"uuid": container["uuid"], "state": container["state"], "scheduling_status": scheduling_text(ctx, request, container)}


def scheduling_text(ctx: Context, request: Row, container: Row) -> str:
    """What `container_status` says about a request's container (the dashboard shows the same)."""
    if container["state"] not in ("Queued", "Locked"):
        return ""
    if request["held"]:
        return "On hold."
    not_before = parse_time((container["scheduling_parameters"] or {}).get("not_before"))
    if container["state"] == "Queued" and not_before is not None and not_before > ctx.now():
        return (
            f"Waiting until {format_time(not_before)[:19]}Z before retrying "  # type: ignore[index]
            f"(attempt {request['container_count']} of {request['container_count_max']})."
        )
    return container["scheduling_status"] or ""
